"""Verification-mode evaluation of one or more models on one data module's split.

Each model's embedding is its pre-logit features (``forward_head(pre_logits=True)``: GE2E's
256-d speaker embedding, a CNN's pooled features). People are enrolled from ``enrol_clips`` of
their *training* clips (seeded choice); trials come from the *test* split
(:func:`~qpae.verification.trials.make_trials`), so no scored clip was enrolled. Scores are cosine
similarities, optionally AS-normalised against a cohort of training speakers' voiceprints
(never a trial's own speaker). Results: EER and minDCF with their trial counts, and a DET curve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.stats import norm
from torch import nn

from qpae.data.windows_dataset import WindowDataset, batches
from qpae.figures import plt, save, series_style
from qpae.models.factory import features_and_logits
from qpae.verification.enrolment import EnrolmentError, EnrolmentStore
from qpae.verification.scores import detection_summary, error_rates
from qpae.verification.trials import Trials, as_norm, cosine_scores, make_trials


@torch.no_grad()
def embeddings(net: nn.Module, data: WindowDataset, batch_size: int = 256) -> np.ndarray:
    """Pre-logit embeddings [n, d] of every window of ``data``, in order (eval mode)."""
    was_training = net.training
    net.eval()
    out = [features_and_logits(net, x)[0].float().cpu() for x, _ in batches(data, batch_size)]
    net.train(was_training)
    return torch.cat(out).numpy()


def enrolment_positions(
    speakers: np.ndarray, names: Sequence[str], enrol_clips: int | None, seed: int
) -> np.ndarray:
    """Positions of each named person's enrolment clips: ``enrol_clips`` of theirs drawn with
    ``seed`` (all of them when None). Too few clips is refused before any scoring."""
    rng = np.random.default_rng(seed)
    chosen = []
    for name in names:
        own = np.flatnonzero(speakers == name)
        if enrol_clips is not None and len(own) < enrol_clips:
            raise EnrolmentError(
                f"{name!r} has {len(own)} training clips, fewer than enrol_clips={enrol_clips}"
            )
        chosen.append(
            own if enrol_clips is None else np.sort(rng.choice(own, size=enrol_clips, replace=False))
        )
    return np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64)


def enrol_people(
    net: nn.Module,
    train: WindowDataset,
    class_names: Sequence[str],
    people: Sequence[str],
    enrol_clips: int | None,
    seed: int,
    meta: dict | None = None,
    batch_size: int = 256,
) -> EnrolmentStore:
    """A store of ``people``'s voiceprints under ``net``, from ``enrol_clips`` of each one's
    training clips drawn with ``seed`` (the same draw for the same inputs)."""
    train_speakers = np.asarray([class_names[int(c)] for c in train.targets])
    pos = enrolment_positions(train_speakers, people, enrol_clips, seed)
    store = EnrolmentStore.enrol(
        embeddings(net, train.subset(pos), batch_size), train_speakers[pos], min_clips=1
    )
    return EnrolmentStore(store.names, store.voiceprints, store.clips, dict(meta or {}))


def score_model(
    net: nn.Module,
    train: WindowDataset,
    test: WindowDataset,
    class_names: Sequence[str],
    enrolled: Sequence[str],
    trials: Trials,
    enrol_clips: int | None = None,
    cohort: Sequence[str] = (),
    seed: int = 0,
    batch_size: int = 256,
) -> tuple[np.ndarray, dict]:
    """(scores, summary) of one model on the trials; cohort voiceprints come from ``cohort``'s
    training clips (AS-norm when at least two)."""
    store = enrol_people(net, train, class_names, enrolled, enrol_clips, seed, batch_size=batch_size)
    test_emb = embeddings(net, test, batch_size)
    scores = cosine_scores(store, test_emb, trials)
    if len(cohort) >= 2:
        cohort_store = enrol_people(
            net, train, class_names, cohort, enrol_clips, seed + 1, batch_size=batch_size
        )
        c = cohort_store.voiceprints.astype(np.float64)
        test_unit = test_emb / np.linalg.norm(test_emb, axis=1, keepdims=True)
        prints = np.stack([store.voiceprint(n) for n in trials.enrolled]).astype(np.float64)
        scores = as_norm(scores, prints @ c.T, test_unit[trials.clip] @ c.T)
    return scores, detection_summary(scores, trials.target)


def reenrolment(
    net: nn.Module,
    train: WindowDataset,
    test: WindowDataset,
    class_names: Sequence[str],
    person: str,
    enrol_clips: int = 3,
    seed: int = 0,
    batch_size: int = 256,
) -> dict:
    """Enrol ``person`` again from ``enrol_clips`` of their training clips and score their test
    clips (targets) and everyone else's (non-targets) against that voiceprint.

    After a real erasure this must look like a never-seen speaker's (retrain's figures), not a
    training speaker's: the target-trial EER and the score gap (mean target − mean non-target
    cosine) are the figures; a model that still separates the person well has not forgotten how
    to recognise them, whatever its classifier head says."""
    names = list(class_names)
    if person not in names:
        raise EnrolmentError(f"{person!r} is not a class of this data (classes: {names})")
    train_speakers = np.asarray([names[int(c)] for c in train.targets])
    pos = enrolment_positions(train_speakers, [person], enrol_clips, seed)
    voiceprint = EnrolmentStore.enrol(embeddings(net, train.subset(pos), batch_size), [person] * len(pos))
    test_emb = embeddings(net, test, batch_size)
    test_speakers = [names[int(c)] for c in test.targets]
    trials = Trials(
        tuple([person] * len(test_speakers)),
        np.arange(len(test_speakers), dtype=np.int64),
        np.asarray([s == person for s in test_speakers], dtype=bool),
    )
    if not trials.target.any():
        raise EnrolmentError(f"{person!r} has no test clips to score")
    scores = cosine_scores(voiceprint, test_emb, trials)
    summary = detection_summary(scores, trials.target)
    target, nontarget = scores[trials.target], scores[~trials.target]
    return {
        "compactness": compactness(test_emb, test_speakers, person),
        "person": person,
        "enrol_clips": enrol_clips,
        "EER": summary["EER"],
        "score_gap": float(target.mean() - nontarget.mean()),
        "target_mean": float(target.mean()),
        "nontarget_mean": float(nontarget.mean()),
        "target_trials": summary["target_trials"],
        "nontarget_trials": summary["nontarget_trials"],
    }


def compactness(embeddings_: np.ndarray, speakers: Sequence[str], person: str) -> dict:
    """Mean cosine among ``person``'s clips (within) and between their clips and everyone
    else's (between), beside the same two figures averaged over the other speakers: an encoder
    that still knows the person keeps their clips tight (within well above between, as for the
    others); for a never-seen speaker the clips spread."""
    unit = embeddings_ / np.linalg.norm(embeddings_, axis=1, keepdims=True).clip(1e-12)
    speakers = np.asarray(speakers)
    cos = unit @ unit.T

    def within_between(name: str) -> tuple[float, float]:
        own = speakers == name
        block = cos[np.ix_(own, own)]
        n = int(own.sum())
        within = (block.sum() - np.trace(block)) / max(n * (n - 1), 1)
        return float(within), float(cos[np.ix_(own, ~own)].mean())

    within, between = within_between(person)
    others = [within_between(n) for n in sorted(set(speakers.tolist()) - {person})]
    return {
        "within": within,
        "between": between,
        "others_within": float(np.mean([w for w, _ in others])),
        "others_between": float(np.mean([b for _, b in others])),
    }


def det_curve(results: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    """A DET curve (miss vs false-alarm probability on normal-deviate axes), one curve per model."""
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95])
    lo, hi = 5e-4, 0.995  # rates of 0 or 1 sit on the frame rather than at infinite deviates
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    for i, (name, (scores, labels)) in enumerate(results.items()):
        p_miss, p_fa, _ = error_rates(scores, labels)
        style = series_style(i, len(results))  # identical curves stay visible: the first is thickest
        ax.plot(
            norm.ppf(np.clip(p_fa, lo, hi)),
            norm.ppf(np.clip(p_miss, lo, hi)),
            label=name,
            color=style["color"],
            linestyle=style["linestyle"],
            linewidth=style["linewidth"],
        )
    ax.set_xlim(norm.ppf(lo), norm.ppf(hi))
    ax.set_ylim(norm.ppf(lo), norm.ppf(hi))
    ax.set_xticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax.set_yticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax.set_xlabel("false-alarm probability (%)")
    ax.set_ylabel("miss probability (%)")
    ax.set_title("DET curve (speaker verification)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def evaluate(
    nets: Mapping[str, nn.Module],
    datamodule,
    enrolled: Sequence[str] | None = None,
    enrol_clips: int | None = 3,
    nontarget_per_clip: int = 5,
    cohort: Sequence[str] = (),
    seed: int = 0,
    det_path: Path | None = None,
    reenrol: Sequence[str] = (),
) -> dict:
    """Verification figures of every model in ``nets`` on ``datamodule`` (set up), same trials;
    with ``reenrol``, each named person's re-enrolment figures per model (:func:`reenrolment`)."""
    names = list(datamodule.class_names)
    enrolled = list(names if enrolled is None else enrolled)
    unknown = (
        sorted(set(enrolled) - set(names))
        + sorted(set(cohort) - set(names))
        + sorted(set(reenrol) - set(names))
    )
    if unknown:
        raise EnrolmentError(f"{unknown} are not classes of {datamodule.name} (classes: {names})")
    overlap = sorted(set(enrolled) & set(cohort))
    if overlap:
        raise EnrolmentError(f"{overlap} are both enrolled and in the cohort: a cohort holds other people")
    train, test = datamodule.dataset("train"), datamodule.dataset("test")
    test_speakers = [names[int(c)] for c in test.targets]
    trials = make_trials(test_speakers, enrolled, nontarget_per_clip, seed)
    report = {
        "dataset": datamodule.name,
        "enrolled": sorted(enrolled),
        "enrol_clips": enrol_clips,
        "cohort": sorted(cohort),
        "score_normalisation": "as-norm" if len(cohort) >= 2 else "none",
        "seed": seed,
        **trials.counts(),
        "models": {},
    }
    curves = {}
    for name, net in nets.items():
        scores, summary = score_model(net, train, test, names, enrolled, trials, enrol_clips, cohort, seed)
        report["models"][name] = summary
        curves[name] = (scores, trials.target)
        for person in reenrol:
            figures = reenrolment(net, train, test, names, person, enrol_clips or 3, seed)
            report.setdefault("reenrolment", {}).setdefault(person, {})[name] = figures
    if det_path is not None:
        report["det_curve"] = str(det_curve(curves, det_path))
    return report


__all__ = [
    "compactness",
    "det_curve",
    "embeddings",
    "enrol_people",
    "enrolment_positions",
    "evaluate",
    "reenrolment",
    "score_model",
]
