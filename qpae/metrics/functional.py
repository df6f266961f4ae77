"""Functional forms of the unlearning metrics: pure functions of logits, labels and forget classes.

Every metric of :mod:`qpae.metrics.unlearning` is two steps, as in torchmetrics:

1. :func:`unlearning_counts` turns one batch into :class:`UnlearningCounts` — six sums (correct
   and total on forget samples, correct and total on retained samples, retained samples predicted
   as a forget class, and the summed own-class probability of the forget samples). Sums of
   batches are the sums of the whole set, which is what makes the metric classes exact across
   batches and DDP processes.
2. A method of :class:`UnlearningCounts` divides (``forget_accuracy()``, ``retain_accuracy()``, …);
   :func:`erb` and :func:`erb_paper` combine FA and RA.

The entry points :func:`forget_accuracy`, :func:`retain_accuracy`, … take ``(preds, target,
forget_classes)`` and chain the two steps, so a caller that holds all logits at once (the audit)
gets by construction the same number as the metric class accumulated over batches.

``preds`` are **logits** ``[N, K]`` with ``K > max(forget_classes)`` (only IL needs probabilities
and applies ``softmax`` itself; argmax is the same either way); ``target`` are integer labels
``[N]``. Values are percentages (0-100); ``0 / 0`` is ``NaN``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "COUNT_NAMES",
    "UnlearningCounts",
    "check_fa_before",
    "check_forget_classes",
    "erb",
    "erb_paper",
    "false_acceptance_rate",
    "false_rejection_rate",
    "forget_accuracy",
    "information_leakage",
    "privacy_erasure_rate",
    "retain_accuracy",
    "scores_from_counts",
    "unlearning_counts",
    "unlearning_scores",
]


def _percent(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``100 * numerator / denominator`` as a float tensor; ``0 / 0`` gives ``NaN``."""
    return 100.0 * numerator.float() / denominator.float()


def _harmonic_mean(a: Tensor, b: Tensor) -> Tensor:
    """``2ab / (a + b)``, ``0`` where ``a + b == 0``, ``NaN`` where either is ``NaN``."""
    denominator = a + b
    mean = 2.0 * a * b / denominator
    return torch.where(denominator == 0, torch.zeros_like(mean), mean)


class UnlearningCounts(NamedTuple):
    """The sums every unlearning metric is computed from (0-d tensors; integer counts, except
    ``forget_prob_sum``, a float). The methods only divide."""

    forget_correct: Tensor  # forget samples predicted as their own class
    forget_total: Tensor  # samples whose target is a forget class
    retain_correct: Tensor  # retained samples predicted as their own class
    retain_total: Tensor  # samples whose target is not a forget class
    retain_as_forget: Tensor  # retained samples predicted as any forget class
    forget_prob_sum: Tensor  # sum over forget samples of softmax(preds)[own class]

    def forget_accuracy(self) -> Tensor:
        """FA: ``100 * forget_correct / forget_total``."""
        return _percent(self.forget_correct, self.forget_total)

    def retain_accuracy(self) -> Tensor:
        """RA: ``100 * retain_correct / retain_total``."""
        return _percent(self.retain_correct, self.retain_total)

    def information_leakage(self) -> Tensor:
        """IL: ``100 * forget_prob_sum / forget_total``, the mean own-class probability."""
        return _percent(self.forget_prob_sum, self.forget_total)

    def false_acceptance_rate(self) -> Tensor:
        """FAR: ``100 * retain_as_forget / retain_total``."""
        return _percent(self.retain_as_forget, self.retain_total)

    def false_rejection_rate(self) -> Tensor:
        """FRR: ``100 * (forget_total - forget_correct) / forget_total`` (``100 - FA``)."""
        return _percent(self.forget_total - self.forget_correct, self.forget_total)

    def privacy_erasure_rate(self, fa_before: float) -> Tensor:
        """PER: ``100 * (fa_before - FA) / fa_before``, not clipped; ``0`` when ``fa_before == 0``
        (nothing to erase), ``NaN`` when no forget sample was counted."""
        fa_after = self.forget_accuracy()
        if fa_before == 0.0:
            return torch.where(fa_after.isnan(), fa_after, torch.zeros_like(fa_after))
        return 100.0 * (fa_before - fa_after) / fa_before


# The metric classes' state names, in the order of UnlearningCounts' fields.
COUNT_NAMES: tuple[str, ...] = UnlearningCounts._fields


def check_forget_classes(forget_classes: Sequence[int] | Tensor) -> tuple[int, ...]:
    """The forget classes as a sorted tuple without duplicates.

    Raises ``TypeError`` for a non-int and ``ValueError`` for a negative class or an empty set.
    """
    if isinstance(forget_classes, Tensor):
        forget_classes = forget_classes.flatten().tolist()
    classes: set[int] = set()
    for c in forget_classes:
        try:
            idx = operator.index(c)
        except TypeError:
            raise TypeError(f"forget_classes must contain ints, got {c!r}") from None
        if idx < 0:
            raise ValueError(f"forget_classes must be non-negative, got {idx}")
        classes.add(idx)
    if not classes:
        raise ValueError("forget_classes is empty")
    return tuple(sorted(classes))


def check_fa_before(fa_before: float | Tensor) -> float:
    """The original model's forget accuracy as a float; ``ValueError`` unless in ``[0, 100]``."""
    fa_before = float(fa_before)
    if not (math.isfinite(fa_before) and 0.0 <= fa_before <= 100.0):
        raise ValueError(f"fa_before must be a percentage in [0, 100], got {fa_before}")
    return fa_before


def unlearning_counts(
    preds: Tensor, target: Tensor, forget_classes: Sequence[int] | Tensor, validate_args: bool = True
) -> UnlearningCounts:
    """The counts of one batch: logits ``[N, K]``, integer labels ``[N]``.

    Shape and dtype checks always run; ``validate_args`` also checks that every label lies in
    ``[0, K)`` (one synchronisation with the device).
    """
    forget_classes = check_forget_classes(forget_classes)
    if preds.dim() != 2:
        raise ValueError(f"preds must be 2-D [N, K] logits, got shape {tuple(preds.shape)}")
    num_classes = preds.shape[1]
    if num_classes <= forget_classes[-1]:
        raise ValueError(
            f"preds has K={num_classes} classes but forget class {forget_classes[-1]} needs K > that"
        )
    if target.dim() != 1 or target.shape[0] != preds.shape[0]:
        raise ValueError(
            f"target must be 1-D with {preds.shape[0]} labels (like preds), got shape {tuple(target.shape)}"
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(f"target must hold integer labels, got dtype {target.dtype}")
    if validate_args and target.numel():
        low, high = int(target.min()), int(target.max())
        if low < 0 or high >= num_classes:
            raise ValueError(f"target labels must lie in [0, {num_classes}), got [{low}, {high}]")
    forget = torch.tensor(forget_classes, device=target.device)
    pred = preds.argmax(dim=1)
    is_forget = torch.isin(target, forget)
    correct = pred == target
    own_prob = preds[is_forget].float().softmax(dim=1).gather(1, target[is_forget].long().unsqueeze(1))
    return UnlearningCounts(
        forget_correct=(correct & is_forget).sum(),
        forget_total=is_forget.sum(),
        retain_correct=(correct & ~is_forget).sum(),
        retain_total=(~is_forget).sum(),
        retain_as_forget=(torch.isin(pred, forget) & ~is_forget).sum(),
        forget_prob_sum=own_prob.sum(),
    )


def forget_accuracy(
    preds: Tensor, target: Tensor, forget_classes: Sequence[int] | Tensor, validate_args: bool = True
) -> Tensor:
    """FA (percent): accuracy on the samples whose target is a forget class; ``NaN`` if none."""
    return unlearning_counts(preds, target, forget_classes, validate_args).forget_accuracy()


def retain_accuracy(
    preds: Tensor, target: Tensor, forget_classes: Sequence[int] | Tensor, validate_args: bool = True
) -> Tensor:
    """RA (percent): accuracy on the samples whose target is not a forget class; ``NaN`` if none."""
    return unlearning_counts(preds, target, forget_classes, validate_args).retain_accuracy()


def information_leakage(
    preds: Tensor, target: Tensor, forget_classes: Sequence[int] | Tensor, validate_args: bool = True
) -> Tensor:
    """IL (percent): mean softmax probability of each forget sample's own class; ``NaN`` if none."""
    return unlearning_counts(preds, target, forget_classes, validate_args).information_leakage()


def false_acceptance_rate(
    preds: Tensor, target: Tensor, forget_classes: Sequence[int] | Tensor, validate_args: bool = True
) -> Tensor:
    """FAR (percent): retained samples predicted as any forget class; ``NaN`` if none retained."""
    return unlearning_counts(preds, target, forget_classes, validate_args).false_acceptance_rate()


def false_rejection_rate(
    preds: Tensor, target: Tensor, forget_classes: Sequence[int] | Tensor, validate_args: bool = True
) -> Tensor:
    """FRR (percent): forget samples not predicted as their own class (``100 - FA``)."""
    return unlearning_counts(preds, target, forget_classes, validate_args).false_rejection_rate()


def privacy_erasure_rate(
    preds: Tensor,
    target: Tensor,
    forget_classes: Sequence[int] | Tensor,
    fa_before: float | Tensor,
    validate_args: bool = True,
) -> Tensor:
    """PER (percent) of the unlearned model's logits against the original's FA ``fa_before``."""
    fa_before = check_fa_before(fa_before)
    return unlearning_counts(preds, target, forget_classes, validate_args).privacy_erasure_rate(fa_before)


def erb(fa: float | Tensor, ra: float | Tensor) -> Tensor:
    """qpae's erasure–retention balance (percent): the harmonic mean of erasure ``100 - FA`` and
    retention ``RA``, ``2 (100 - FA) RA / ((100 - FA) + RA)``. Not the paper's formula (see
    :func:`erb_paper`): it rewards forgetting, which the paper's does not."""
    fa, ra = torch.as_tensor(fa, dtype=torch.float64), torch.as_tensor(ra, dtype=torch.float64)
    return _harmonic_mean(100.0 - fa, ra)


def erb_paper(fa: float | Tensor, ra: float | Tensor) -> Tensor:
    """The ERB values of the paper's Table 2 (percent): ``2 FA RA / (FA + RA)``, the harmonic
    mean of forget and retain accuracy (ResNet18 original: FA 99.04, RA 96.25 → 97.62; ViT SSD:
    FA 100, RA 61.93 → 76.49). It grows with FA, so it does not measure erasure; it is here to
    compare with the paper's tables."""
    fa, ra = torch.as_tensor(fa, dtype=torch.float64), torch.as_tensor(ra, dtype=torch.float64)
    return _harmonic_mean(fa, ra)


def scores_from_counts(
    counts: UnlearningCounts, fa_before: float | Tensor | None = None
) -> dict[str, Tensor]:
    """Every unlearning metric of ``counts``, keyed like :func:`qpae.metrics.unlearning_metrics`
    (``PER`` only when ``fa_before`` is given)."""
    fa, ra = counts.forget_accuracy(), counts.retain_accuracy()
    scores = {
        "FA": fa,
        "FAR": counts.false_acceptance_rate(),
        "RA": ra,
        "FRR": counts.false_rejection_rate(),
    }
    if fa_before is not None:
        scores["PER"] = counts.privacy_erasure_rate(check_fa_before(fa_before))
    scores["IL"] = counts.information_leakage()
    scores["ERB"] = erb(fa, ra).to(fa.dtype)
    scores["ERB_paper"] = erb_paper(fa, ra).to(fa.dtype)
    return scores


def unlearning_scores(
    preds: Tensor,
    target: Tensor,
    forget_classes: Sequence[int] | Tensor,
    fa_before: float | Tensor | None = None,
    validate_args: bool = True,
) -> dict[str, Tensor]:
    """The functional form of :func:`qpae.metrics.unlearning_metrics`: every metric of one set
    of logits, in :data:`~qpae.metrics.METRIC_ORDER` (``PER`` only when ``fa_before`` is given)."""
    counts = unlearning_counts(preds, target, forget_classes, validate_args)
    return scores_from_counts(counts, fa_before)
