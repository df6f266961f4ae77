"""Verification trials, built reproducibly from a test split, and cosine scoring with adaptive
score normalisation (AS-norm) against a cohort of training speakers.

A trial pairs an enrolled person with a test clip: *target* when the clip is theirs, *non-target*
otherwise. :func:`make_trials` gives every test clip of an enrolled person one target trial, and
every test clip ``nontarget_per_clip`` non-target trials against other enrolled people drawn with
``seed``: the same inputs and seed give the same list, in the same order, on any machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qpae.verification.enrolment import EnrolmentError, EnrolmentStore, l2_normalise


@dataclass(frozen=True)
class Trials:
    """Parallel arrays: the enrolled person's name, the test clip's position, target or not."""

    enrolled: tuple[str, ...]
    clip: np.ndarray
    target: np.ndarray

    def __len__(self) -> int:
        return len(self.clip)

    def counts(self) -> dict:
        return {"target_trials": int(self.target.sum()), "nontarget_trials": int((~self.target).sum())}


def make_trials(
    clip_speakers: Sequence[str], enrolled: Sequence[str], nontarget_per_clip: int = 5, seed: int = 0
) -> Trials:
    """Trials over test clips whose speakers are ``clip_speakers``, against ``enrolled`` names.

    Clips of people not enrolled (never-seen speakers) get non-target trials only: they are the
    impostors a deployed system meets.
    """
    enrolled = sorted(str(n) for n in enrolled)
    if len(enrolled) < 2 and nontarget_per_clip > 0:
        raise EnrolmentError("non-target trials need at least two enrolled people")
    if nontarget_per_clip < 0:
        raise EnrolmentError(f"nontarget_per_clip must be >= 0, got {nontarget_per_clip}")
    rng = np.random.default_rng(seed)
    names, clips, targets = [], [], []
    for k, speaker in enumerate(str(s) for s in clip_speakers):
        if speaker in enrolled:
            names.append(speaker), clips.append(k), targets.append(True)
        others = [n for n in enrolled if n != speaker]
        for j in rng.choice(len(others), size=min(nontarget_per_clip, len(others)), replace=False):
            names.append(others[int(j)]), clips.append(k), targets.append(False)
    return Trials(tuple(names), np.asarray(clips, dtype=np.int64), np.asarray(targets, dtype=bool))


def check_trials(trials: Trials, store: EnrolmentStore, n_clips: int) -> None:
    """Every trial names an enrolled person and an existing clip (checked before any scoring)."""
    unknown = sorted(set(trials.enrolled) - set(store.names))
    if unknown:
        raise EnrolmentError(f"the trial list names people who are not enrolled: {unknown}")
    if len(trials) and (trials.clip.min() < 0 or trials.clip.max() >= n_clips):
        raise EnrolmentError(f"the trial list names clips outside 0..{n_clips - 1}")


def cosine_scores(store: EnrolmentStore, embeddings: np.ndarray, trials: Trials) -> np.ndarray:
    """Cosine similarity of each trial's voiceprint and test-clip embedding."""
    check_trials(trials, store, len(embeddings))
    test = l2_normalise(np.asarray(embeddings, dtype=np.float64))
    prints = store.voiceprints.astype(np.float64)
    rows = np.asarray([store.index(n) for n in trials.enrolled], dtype=np.int64)
    return np.einsum("ij,ij->i", prints[rows], test[trials.clip])


def as_norm(
    scores: np.ndarray,
    enrol_cohort: np.ndarray,
    test_cohort: np.ndarray,
    top_k: int = 200,
) -> np.ndarray:
    """Adaptive symmetric score normalisation (AS-norm; Matějka et al. 2017).

    ``enrol_cohort`` [trials, C]: each trial's voiceprint scored against the cohort;
    ``test_cohort`` [trials, C]: each trial's test clip scored against it. Each side's statistics
    use its ``top_k`` highest cohort scores; the score is the mean of the two z-normalised ones.
    """
    scores = np.asarray(scores, dtype=np.float64)
    e, t = np.asarray(enrol_cohort, dtype=np.float64), np.asarray(test_cohort, dtype=np.float64)
    if e.shape != t.shape or e.shape[0] != len(scores):
        raise ValueError(f"cohort scores of shapes {e.shape} and {t.shape} for {len(scores)} trials")
    if e.shape[1] < 2:
        raise ValueError("score normalisation needs a cohort of at least two speakers")
    k = min(top_k, e.shape[1])

    def stats(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        top = -np.sort(-c, axis=1)[:, :k]
        return top.mean(axis=1), np.maximum(top.std(axis=1), 1e-8)

    (me, se), (mt, st) = stats(e), stats(t)
    return 0.5 * ((scores - me) / se + (scores - mt) / st)


__all__ = ["Trials", "as_norm", "check_trials", "cosine_scores", "make_trials"]
