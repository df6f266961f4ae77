"""Unlearning metrics of QPAudioEraser (arXiv 2507.22208) as torchmetrics ``Metric`` subclasses.

Every metric takes the forget classes ``F`` in its constructor and is updated with

* ``preds``: **logits** ``[N, K]`` (``K > max(F)``). Only :class:`InformationLeakage` needs
  probabilities and applies ``softmax`` itself; the other metrics use ``argmax``, which is the same
  for logits and probabilities. Passing probabilities to :class:`InformationLeakage` would apply
  softmax twice, so pass logits.
* ``target``: integer labels ``[N]``.

All values are percentages (0-100), as in the paper's tables. States are sums with
``dist_reduce_fx="sum"``, so they synchronise across DDP processes; ``update`` only accumulates and
``compute`` only divides.

Empty cases: when no relevant sample has been seen (e.g. no forget sample for ``FA``, no retained
sample for ``RA``), ``compute`` returns ``NaN`` instead of raising; ``ERB`` and ``ERB_paper`` are
``NaN`` when either of their two parts is. ``PER`` is ``0`` when ``fa_before == 0`` (nothing to
erase), but still ``NaN`` if no forget sample was seen.

Metric keys used by :func:`unlearning_metrics`, in the paper's column order :data:`METRIC_ORDER`:
``FA``, ``FAR``, ``RA``, ``FRR``, ``PER``, ``IL``, ``ERB``, ``ERB_paper``.

Where qpae and the paper differ: ``FRR`` counts forget samples not recognised (``100 - FA``; the
paper's public code computes ``1 - RA``); ``PER`` is not clipped to ``[0, 100]`` (the public code
clips it); ``ERB`` is qpae's erasure–retention balance, and ``ERB_paper`` is the formula that the
paper's Table 2 values fit, ``2·FA·RA/(FA+RA)``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection

__all__ = [
    "ERB",
    "ERBPaper",
    "METRIC_ORDER",
    "FalseAcceptanceRate",
    "FalseRejectionRate",
    "ForgetAccuracy",
    "InformationLeakage",
    "PrivacyErasureRate",
    "RetainAccuracy",
    "erb",
    "erb_paper",
    "unlearning_metrics",
]

# The paper's column order (Table 2), then the formula its ERB values fit; every report uses it.
METRIC_ORDER = ("FA", "FAR", "RA", "FRR", "PER", "IL", "ERB", "ERB_paper")


def _percent(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``100 * numerator / denominator`` as a float tensor; ``0 / 0`` gives ``NaN``."""
    return 100.0 * numerator.float() / denominator.float()


class _ForgetSetMetric(Metric):
    """Base class: validates the forget set and the ``update`` inputs.

    Args:
        forget_classes: the classes being forgotten (non-empty, non-negative ints; duplicates are
            ignored).
        validate_args: also check that every target lies in ``[0, K)`` (this synchronises with the
            device once per ``update``); shape checks always run.
        kwargs: forwarded to :class:`torchmetrics.Metric`.
    """

    is_differentiable = False
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 100.0

    def __init__(self, forget_classes: Sequence[int], validate_args: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
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
        self.forget_classes: tuple[int, ...] = tuple(sorted(classes))
        self.validate_args = validate_args

    def _split(self, preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Validate inputs; return ``(predicted class [N], is_forget mask [N])``."""
        if preds.dim() != 2:
            raise ValueError(f"preds must be 2-D [N, K] logits, got shape {tuple(preds.shape)}")
        num_classes = preds.shape[1]
        if num_classes <= self.forget_classes[-1]:
            raise ValueError(
                f"preds has K={num_classes} classes but forget class {self.forget_classes[-1]} needs K > that"
            )
        if target.dim() != 1 or target.shape[0] != preds.shape[0]:
            raise ValueError(
                f"target must be 1-D with {preds.shape[0]} labels (like preds), "
                f"got shape {tuple(target.shape)}"
            )
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise ValueError(f"target must hold integer labels, got dtype {target.dtype}")
        if self.validate_args and target.numel():
            low, high = int(target.min()), int(target.max())
            if low < 0 or high >= num_classes:
                raise ValueError(f"target labels must lie in [0, {num_classes}), got [{low}, {high}]")
        forget = torch.tensor(self.forget_classes, device=target.device)
        return preds.argmax(dim=1), torch.isin(target, forget)

    def _count(self, name: str) -> None:
        self.add_state(name, default=torch.tensor(0), dist_reduce_fx="sum")


class ForgetAccuracy(_ForgetSetMetric):
    """FA: accuracy (percent) on samples whose target is a forget class. ``NaN`` if none seen.

    ``FA = 100 * #{i : y_i in F, argmax(preds_i) == y_i} / #{i : y_i in F}``; lower is better.
    """

    higher_is_better = False
    forget_correct: Tensor
    forget_total: Tensor

    def __init__(self, forget_classes: Sequence[int], **kwargs: Any) -> None:
        super().__init__(forget_classes, **kwargs)
        self._count("forget_correct")
        self._count("forget_total")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Accumulate a batch of logits ``[N, K]`` and labels ``[N]``."""
        pred, is_forget = self._split(preds, target)
        self.forget_correct += ((pred == target) & is_forget).sum()
        self.forget_total += is_forget.sum()

    def compute(self) -> Tensor:
        return _percent(self.forget_correct, self.forget_total)


class RetainAccuracy(_ForgetSetMetric):
    """RA: accuracy (percent) on samples whose target is not a forget class. ``NaN`` if none seen.

    ``RA = 100 * #{i : y_i not in F, argmax(preds_i) == y_i} / #{i : y_i not in F}``; higher is
    better.
    """

    higher_is_better = True
    retain_correct: Tensor
    retain_total: Tensor

    def __init__(self, forget_classes: Sequence[int], **kwargs: Any) -> None:
        super().__init__(forget_classes, **kwargs)
        self._count("retain_correct")
        self._count("retain_total")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Accumulate a batch of logits ``[N, K]`` and labels ``[N]``."""
        pred, is_forget = self._split(preds, target)
        self.retain_correct += ((pred == target) & ~is_forget).sum()
        self.retain_total += (~is_forget).sum()

    def compute(self) -> Tensor:
        return _percent(self.retain_correct, self.retain_total)


class InformationLeakage(_ForgetSetMetric):
    """IL: mean softmax probability (percent) of each forget sample's own class.

    ``IL = 100 * mean_{i : y_i in F} softmax(preds_i)[y_i]``. With several forget classes each
    sample counts the probability of its own label. ``preds`` must be logits (softmax is applied
    here). ``NaN`` if no forget sample was seen; lower is better.
    """

    higher_is_better = False
    forget_prob_sum: Tensor
    forget_total: Tensor

    def __init__(self, forget_classes: Sequence[int], **kwargs: Any) -> None:
        super().__init__(forget_classes, **kwargs)
        self.add_state("forget_prob_sum", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self._count("forget_total")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Accumulate a batch of logits ``[N, K]`` and labels ``[N]``."""
        _, is_forget = self._split(preds, target)
        probs = preds[is_forget].float().softmax(dim=1)
        own = probs.gather(1, target[is_forget].long().unsqueeze(1))
        self.forget_prob_sum += own.sum().to(self.forget_prob_sum.dtype)
        self.forget_total += is_forget.sum()

    def compute(self) -> Tensor:
        return _percent(self.forget_prob_sum, self.forget_total)


class FalseAcceptanceRate(_ForgetSetMetric):
    """FAR: share (percent) of retained samples predicted as any forget class.

    ``FAR = 100 * #{i : y_i not in F, argmax(preds_i) in F} / #{i : y_i not in F}``. ``NaN`` if no
    retained sample was seen; lower is better.
    """

    higher_is_better = False
    retain_as_forget: Tensor
    retain_total: Tensor

    def __init__(self, forget_classes: Sequence[int], **kwargs: Any) -> None:
        super().__init__(forget_classes, **kwargs)
        self._count("retain_as_forget")
        self._count("retain_total")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Accumulate a batch of logits ``[N, K]`` and labels ``[N]``."""
        pred, is_forget = self._split(preds, target)
        pred_forget = torch.isin(pred, torch.tensor(self.forget_classes, device=pred.device))
        self.retain_as_forget += (pred_forget & ~is_forget).sum()
        self.retain_total += (~is_forget).sum()

    def compute(self) -> Tensor:
        return _percent(self.retain_as_forget, self.retain_total)


class FalseRejectionRate(_ForgetSetMetric):
    """FRR: share (percent) of forget samples not predicted as their own class.

    ``FRR = 100 * #{i : y_i in F, argmax(preds_i) != y_i} / #{i : y_i in F}``: it equals
    ``100 - FA``. The paper's public code computes ``1 - RA`` instead, so this column differs from
    the paper's tables. After unlearning a high FRR means the forget classes are rejected, so
    higher is better. ``NaN`` if no forget sample was seen.
    """

    higher_is_better = True
    forget_rejected: Tensor
    forget_total: Tensor

    def __init__(self, forget_classes: Sequence[int], **kwargs: Any) -> None:
        super().__init__(forget_classes, **kwargs)
        self._count("forget_rejected")
        self._count("forget_total")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Accumulate a batch of logits ``[N, K]`` and labels ``[N]``."""
        pred, is_forget = self._split(preds, target)
        self.forget_rejected += ((pred != target) & is_forget).sum()
        self.forget_total += is_forget.sum()

    def compute(self) -> Tensor:
        return _percent(self.forget_rejected, self.forget_total)


class PrivacyErasureRate(_ForgetSetMetric):
    """PER: relative drop (percent) of forget accuracy, ``100 * (FA_before - FA_after) / FA_before``.

    ``fa_before`` is the forget accuracy of the original model in percent (a float or 0-d tensor,
    e.g. ``ForgetAccuracy(F)`` computed on the original model). It is fixed at construction, so
    ``update(preds, target)`` keeps the same signature as every other metric here and the metric
    can sit in a :class:`~torchmetrics.MetricCollection`. ``FA_after`` is accumulated from the
    unlearned model's predictions, exactly like :class:`ForgetAccuracy`.

    If ``fa_before == 0`` the result is ``0`` (there was nothing to erase). If no forget sample was
    seen the result is ``NaN``. PER is not clipped: it is negative when forget accuracy went up
    (the paper's public code clips it to ``[0, 100]``, which hides that). Higher is better.
    """

    higher_is_better = True
    plot_lower_bound = None
    forget_correct: Tensor
    forget_total: Tensor

    def __init__(self, forget_classes: Sequence[int], fa_before: float | Tensor, **kwargs: Any) -> None:
        super().__init__(forget_classes, **kwargs)
        fa_before = float(fa_before)
        if not (math.isfinite(fa_before) and 0.0 <= fa_before <= 100.0):
            raise ValueError(f"fa_before must be a percentage in [0, 100], got {fa_before}")
        self.fa_before = fa_before
        self._count("forget_correct")
        self._count("forget_total")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Accumulate a batch of the unlearned model's logits ``[N, K]`` and labels ``[N]``."""
        pred, is_forget = self._split(preds, target)
        self.forget_correct += ((pred == target) & is_forget).sum()
        self.forget_total += is_forget.sum()

    def compute(self) -> Tensor:
        fa_after = _percent(self.forget_correct, self.forget_total)
        if self.fa_before == 0.0:
            return torch.where(fa_after.isnan(), fa_after, torch.zeros_like(fa_after))
        return 100.0 * (self.fa_before - fa_after) / self.fa_before


def _harmonic_mean(a: Tensor, b: Tensor) -> Tensor:
    """``2ab / (a + b)``, ``0`` where ``a + b == 0``, ``NaN`` where either is ``NaN``."""
    denominator = a + b
    mean = 2.0 * a * b / denominator
    return torch.where(denominator == 0, torch.zeros_like(mean), mean)


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


class _ForgetRetainCounts(_ForgetSetMetric):
    """Base of the balance metrics: correct/total counts on forget and on retained samples."""

    forget_correct: Tensor
    forget_total: Tensor
    retain_correct: Tensor
    retain_total: Tensor

    def __init__(self, forget_classes: Sequence[int], **kwargs: Any) -> None:
        super().__init__(forget_classes, **kwargs)
        for name in ("forget_correct", "forget_total", "retain_correct", "retain_total"):
            self._count(name)

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Accumulate a batch of logits ``[N, K]`` and labels ``[N]``."""
        pred, is_forget = self._split(preds, target)
        correct = pred == target
        self.forget_correct += (correct & is_forget).sum()
        self.forget_total += is_forget.sum()
        self.retain_correct += (correct & ~is_forget).sum()
        self.retain_total += (~is_forget).sum()

    def _fa_ra(self) -> tuple[Tensor, Tensor]:
        return (
            _percent(self.forget_correct, self.forget_total),
            _percent(self.retain_correct, self.retain_total),
        )


class ERB(_ForgetRetainCounts):
    """ERB, qpae's erasure–retention balance: harmonic mean of erasure ``100 - FA`` and retention
    ``RA`` (percent), ``2 (100 - FA) RA / ((100 - FA) + RA)`` (:func:`erb`).

    This is qpae's measure, not the paper's: the paper's Table 2 values fit ``2·FA·RA/(FA+RA)``
    instead, reported as :class:`ERBPaper` (``ERB_paper``). ``0`` when the denominator is ``0``
    (``FA = 100`` and ``RA = 0``); ``NaN`` when no forget or no retained sample was seen. Higher
    is better.
    """

    higher_is_better = True

    def compute(self) -> Tensor:
        fa, ra = self._fa_ra()
        return erb(fa, ra).to(fa.dtype)


class ERBPaper(_ForgetRetainCounts):
    """ERB_paper: the formula the paper's Table 2 ERB values fit, ``2·FA·RA/(FA+RA)`` (percent;
    :func:`erb_paper`), from the same counts as :class:`ERB`.

    It is the harmonic mean of forget and retain accuracy, so it rises with FA: it reproduces the
    paper's numbers and is not a measure of erasure (``higher_is_better`` is ``None``). ``0`` when
    ``FA = RA = 0``; ``NaN`` when no forget or no retained sample was seen.
    """

    higher_is_better = None

    def compute(self) -> Tensor:
        fa, ra = self._fa_ra()
        return erb_paper(fa, ra).to(fa.dtype)


def unlearning_metrics(
    forget_classes: Sequence[int], fa_before: float | Tensor | None = None, **kwargs: Any
) -> MetricCollection:
    """All unlearning metrics in a :class:`~torchmetrics.MetricCollection`.

    Keys: ``FA``, ``RA``, ``IL``, ``FAR``, ``FRR``, ``ERB``, ``ERB_paper``, plus ``PER`` only when
    ``fa_before`` (percent) is given. Typical use: compute ``FA`` of the original model with
    ``unlearning_metrics(F)``, then evaluate the unlearned model with
    ``unlearning_metrics(F, fa_before=that_fa)``. ``kwargs`` go to every metric (e.g.
    ``validate_args=False``); use ``.clone(prefix="val/")`` for prefixed names.
    """
    metrics: dict[str, Metric] = {
        "FA": ForgetAccuracy(forget_classes, **kwargs),
        "RA": RetainAccuracy(forget_classes, **kwargs),
        "IL": InformationLeakage(forget_classes, **kwargs),
    }
    if fa_before is not None:
        metrics["PER"] = PrivacyErasureRate(forget_classes, fa_before, **kwargs)
    metrics["FAR"] = FalseAcceptanceRate(forget_classes, **kwargs)
    metrics["FRR"] = FalseRejectionRate(forget_classes, **kwargs)
    metrics["ERB"] = ERB(forget_classes, **kwargs)
    metrics["ERB_paper"] = ERBPaper(forget_classes, **kwargs)
    return MetricCollection(metrics)
