"""Ensembles for certification: N models of one kind, built once and cached under a content key.

Three kinds, all from one original model and one forget request:

* ``retrain`` — N networks trained from scratch on the retained training data with the original's
  pretraining recipe. Its key is what decides those networks (the dataset and its split, the
  network, the recipe, the forget set, retrain's settings), not the original's weights: every
  method and run certified against this data and recipe shares it.
* ``unlearned`` — N runs of the method under test from the original (key: the original's sha256,
  the forget set and the method's resolved settings).
* ``power`` — N runs of a method known not to forget (``finetune``): the certificate's power test.

Member ``i`` runs with seed ``i`` and data order ``i``. It is published like any unlearning run
(``model.pt``, ``metrics.json``, ``receipt.json`` together or not at all) into
``<cache>/<kind>-<key>/member-<i>``, so a killed build resumes where it stopped and a finished
member is never built twice. ``identity.json`` beside the members says what they are; a folder
whose identity differs from the settings asked for is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch

from qpae.audit.epsilon import logit_scaled_confidence
from qpae.audit.run import net_of, outputs
from qpae.checkpoints import json_bytes, read_model, write_atomic
from qpae.data.base import AudioDataModule
from qpae.data.windows_dataset import WindowDataset
from qpae.publish import remove_stale_leftovers
from qpae.unlearning.methods.base import UnlearningMethod
from qpae.unlearning.request import ForgetRequest
from qpae.unlearning.runner import OUTPUT_FILES, unlearn_request

log = logging.getLogger(__name__)

KINDS = ("retrain", "unlearned", "power")
# with fewer models the power test cannot pass (the Clopper–Pearson ε of two separable
# ensembles of 5 is 0) and the null test compares 2 models with 2
MIN_MEMBERS = 6
MIN_FORGET_CLIPS = 3


class EnsembleMismatchError(ValueError):
    """An ensemble folder holds members built with other settings."""


def identity(
    kind: str,
    original_meta: dict,
    original_sha256: str,
    request: ForgetRequest,
    class_names,
    method: dict,
    context: dict | None = None,
) -> dict:
    """What decides an ensemble's members (see the module docstring): its cache key's content.
    ``context`` holds the run settings that shape training beyond the method (the trainer's
    precision, gradient clipping…, the batch size, qpae's version)."""
    if kind not in KINDS:
        raise ValueError(f"ensemble kind must be one of {KINDS}, got {kind!r}")
    out = {
        "kind": kind,
        "forget_classes": list(request.all_forgotten),
        "forget_class_names": [class_names[c] for c in request.all_forgotten],
        "method": method,
        "context": context or {},
        "member_seed": "the member's index (seed and data order)",
    }
    if kind == "retrain":
        return {
            **out,
            "data": original_meta["data"],
            "model": original_meta["model"],
            "recipe": original_meta.get("recipe"),
            "normalisation": original_meta.get("normalisation"),
        }
    return {**out, "original_sha256": original_sha256}


@dataclass(frozen=True)
class Ensemble:
    """One ensemble's folder in the cache."""

    kind: str
    identity: dict
    root: Path

    @property
    def key(self) -> str:
        blob = json.dumps(self.identity, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def path(self) -> Path:
        return Path(self.root) / f"{self.kind}-{self.key}"

    def member_path(self, i: int) -> Path:
        return self.path / f"member-{i:03d}"

    def is_finished(self, i: int) -> bool:
        return all((self.member_path(i) / name).is_file() for name in OUTPUT_FILES)

    def missing(self, n: int) -> list[int]:
        return [i for i in range(n) if not self.is_finished(i)]

    def claim(self) -> None:
        """Write ``identity.json`` (first use) or check it (later uses)."""
        path = self.path / "identity.json"
        if path.is_file():
            recorded = json.loads(path.read_text(encoding="utf-8"))
            expected = json.loads(json_bytes(self.identity))
            if recorded != expected:
                changed = sorted(k for k in {*recorded, *expected} if recorded.get(k) != expected.get(k))
                raise EnsembleMismatchError(
                    f"{self.path} holds a {self.kind} ensemble built with other settings ({', '.join(changed)}); "
                    "it is not used. Remove it or point certify.cache elsewhere."
                )
            return
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json_bytes(self.identity))


def build_member(
    ensemble: Ensemble,
    i: int,
    original: Path,
    request: ForgetRequest,
    datamodule: AudioDataModule,
    method: UnlearningMethod,
    make_trainer: Callable[..., L.Trainer],
) -> Path:
    """Member ``i`` (seed ``i``, data order ``i``), built now unless it is finished already."""
    ensemble.claim()
    folder = ensemble.member_path(i)
    if ensemble.is_finished(i):
        log.info("%s %d: cached in %s", ensemble.kind, i, folder)
        return folder
    for leftover in remove_stale_leftovers(ensemble.path):
        log.warning("removed %s, left by a killed member", leftover)
    L.seed_everything(i, workers=True, verbose=False)
    datamodule.order_seed = i
    unlearn_request(original, request, datamodule, method, make_trainer, folder)
    return folder


@dataclass(frozen=True)
class Clips:
    """The clips every member is measured on: the forget request's training clips, a fixed
    sample of retained training clips, and the test split."""

    forget_train: tuple[torch.Tensor, torch.Tensor]
    retain_train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor] | WindowDataset  # read a batch at a time from the store
    forget_classes: tuple[int, ...]


def certification_clips(datamodule: AudioDataModule, request: ForgetRequest, retained: int) -> Clips:
    """:class:`Clips` for ``request``; the retained sample is the same for every member
    (a fixed permutation, seed 0). Fewer than :data:`MIN_FORGET_CLIPS` forget training clips
    is an error: ε over so few clips says nothing."""
    if isinstance(retained, bool) or not isinstance(retained, int) or retained < 1:
        raise ValueError(f"certify.retained_clips must be a whole number >= 1, got {retained!r}")
    # this request's own clips (the same as every forgotten class's for a first request); every
    # forgotten class stays out of the retained sample and of the retained test clips
    forget = datamodule.forget_set(request.forget_classes, "train").tensors
    if len(forget[1]) < MIN_FORGET_CLIPS:
        raise ValueError(
            f"the forget set has {len(forget[1])} training clips; certifying needs at least {MIN_FORGET_CLIPS}"
        )
    retain = datamodule.retain_set(request.all_forgotten, "train")
    pick = torch.randperm(len(retain), generator=torch.Generator().manual_seed(0))[:retained]
    test = datamodule.dataset("test")
    return Clips(tuple(forget), tuple(retain.subset(pick).tensors), test, tuple(request.all_forgotten))


def member_measures(model_path: Path, clips: Clips) -> dict:
    """One member's logit-scaled confidences (forget and retained training clips), the sha256
    of its file and its utility (RA: accuracy on retained classes' test clips; test accuracy on every test clip).

    Raises:
        FloatingPointError: the member's logits hold NaN or infinity.
    """
    model = read_model(model_path)  # read once: its weights and the sha256 of its bytes
    net = net_of(model)
    logits, labels = {}, {}
    for name, xy in (
        ("forget", clips.forget_train),
        ("retain", clips.retain_train),
        ("test", clips.test),
    ):
        found = outputs(net, xy)
        logits[name], labels[name] = found.logits, found.labels
        if not torch.isfinite(logits[name]).all():
            raise FloatingPointError(f"{model_path} gives non-finite logits: it cannot be certified")
    out = {
        "sha256": model.sha256,
        "conf_forget": logit_scaled_confidence(logits["forget"], clips.forget_train[1]).numpy(),
        "conf_retain": logit_scaled_confidence(logits["retain"], clips.retain_train[1]).numpy(),
    }
    y = labels["test"]
    correct = (logits["test"].argmax(1) == y).double()
    retained = ~torch.isin(y, torch.tensor(clips.forget_classes))
    out["RA"] = float(100 * correct[retained].mean())
    out["test_acc"] = float(100 * correct.mean())
    return out


def ensemble_measures(ensemble: Ensemble, n: int, clips: Clips) -> dict:
    """Members 0 … n−1 stacked: confidences [n, clips], utilities [n], member file hashes and
    their fit times (metrics.json)."""
    missing = ensemble.missing(n)
    if missing:
        raise FileNotFoundError(f"{ensemble.kind} ensemble {ensemble.path} lacks members {missing}")
    rows = [member_measures(ensemble.member_path(i) / "model.pt", clips) for i in range(n)]
    fits = []
    for i in range(n):
        report = json.loads((ensemble.member_path(i) / "metrics.json").read_text(encoding="utf-8"))
        fits.append(float(report["timings_s"]["fit_total_s"]))
    return {
        "conf_forget": np.stack([r["conf_forget"] for r in rows]),
        "conf_retain": np.stack([r["conf_retain"] for r in rows]),
        "RA": [r["RA"] for r in rows],
        "test_acc": [r["test_acc"] for r in rows],
        "sha256": [r["sha256"] for r in rows],
        "fit_s": fits,
    }


def check_members(n: object, kinds: Sequence[str] = KINDS) -> None:
    """``n`` models per ensemble: a whole number, at least :data:`MIN_MEMBERS`."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise ValueError(f"certify.n must be a whole number of models, got {n!r}")
    if n < MIN_MEMBERS:
        raise ValueError(
            f"an ensemble needs at least {MIN_MEMBERS} models (certify.n={n}): with fewer, the power test "
            "cannot show any ε and the null test compares 2 models with 2"
        )
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"ensemble kind must be one of {KINDS}, got {kind!r}")
