"""Unlearning metrics of QPAudioEraser (arXiv 2507.22208) as torchmetrics ``Metric`` subclasses.

Every metric takes the forget classes ``F`` in its constructor and is updated with

* ``preds``: **logits** ``[N, K]`` (``K > max(F)``). Only :class:`InformationLeakage` needs
  probabilities and applies ``softmax`` itself; the other metrics use ``argmax``, which is the same
  for logits and probabilities. Passing probabilities to :class:`InformationLeakage` would apply
  softmax twice, so pass logits.
* ``target``: integer labels ``[N]``.

All values are percentages (0-100), as in the paper's tables.

Structure (torchmetrics' own): one base declares the six sums of
:class:`~qpae.metrics.functional.UnlearningCounts` as states with ``dist_reduce_fx="sum"`` and
updates them all with :func:`~qpae.metrics.functional.unlearning_counts`; each metric is a thin
subclass whose ``compute`` is one of the pure functional forms of :mod:`qpae.metrics.functional`.
So the states synchronise exactly across DDP processes, ``update`` only accumulates and
``compute`` only divides, and the functional forms on all logits at once give the same numbers.

Because every metric has the same states, a :class:`~torchmetrics.MetricCollection` of them
shares one set: :func:`unlearning_metrics` declares a single compute group, so each ``update``
runs once for the whole collection and every metric reads the same counts. (Left to itself,
``MetricCollection`` finds the same group by comparing the states after the first ``update`` —
which would also merge metrics of *different* forget classes whose first-batch counts happen to
coincide; build such collections with ``compute_groups=False``.)

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

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection

from qpae.metrics.functional import (
    COUNT_NAMES,
    UnlearningCounts,
    check_fa_before,
    check_forget_classes,
    erb,
    erb_paper,
    unlearning_counts,
)

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


class _UnlearningCountsMetric(Metric):
    """Base of every unlearning metric: the forget set, and the six sums of
    :class:`~qpae.metrics.functional.UnlearningCounts` as ``"sum"``-reduced states, declared and
    updated here once. Subclasses only implement ``compute``.

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
    forget_correct: Tensor
    forget_total: Tensor
    retain_correct: Tensor
    retain_total: Tensor
    retain_as_forget: Tensor
    forget_prob_sum: Tensor

    def __init__(self, forget_classes: Sequence[int], validate_args: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.forget_classes: tuple[int, ...] = check_forget_classes(forget_classes)
        self.validate_args = validate_args
        for name in COUNT_NAMES:
            default = torch.tensor(0.0) if name == "forget_prob_sum" else torch.tensor(0)
            self.add_state(name, default=default, dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Accumulate a batch of logits ``[N, K]`` and labels ``[N]``."""
        batch = unlearning_counts(preds, target, self.forget_classes, self.validate_args)
        for name, value in zip(COUNT_NAMES, batch, strict=True):
            state = getattr(self, name)
            setattr(self, name, state + value.to(state.dtype))

    def counts(self) -> UnlearningCounts:
        """The accumulated sums (this process's own, unless called inside ``compute``)."""
        return UnlearningCounts(*(getattr(self, name) for name in COUNT_NAMES))


class ForgetAccuracy(_UnlearningCountsMetric):
    """FA: accuracy (percent) on samples whose target is a forget class. ``NaN`` if none seen.

    ``FA = 100 * #{i : y_i in F, argmax(preds_i) == y_i} / #{i : y_i in F}``; lower is better.
    """

    higher_is_better = False

    def compute(self) -> Tensor:
        return self.counts().forget_accuracy()


class RetainAccuracy(_UnlearningCountsMetric):
    """RA: accuracy (percent) on samples whose target is not a forget class. ``NaN`` if none seen.

    ``RA = 100 * #{i : y_i not in F, argmax(preds_i) == y_i} / #{i : y_i not in F}``; higher is
    better.
    """

    higher_is_better = True

    def compute(self) -> Tensor:
        return self.counts().retain_accuracy()


class InformationLeakage(_UnlearningCountsMetric):
    """IL: mean softmax probability (percent) of each forget sample's own class.

    ``IL = 100 * mean_{i : y_i in F} softmax(preds_i)[y_i]``. With several forget classes each
    sample counts the probability of its own label. ``preds`` must be logits (softmax is applied
    here). ``NaN`` if no forget sample was seen; lower is better.
    """

    higher_is_better = False

    def compute(self) -> Tensor:
        return self.counts().information_leakage()


class FalseAcceptanceRate(_UnlearningCountsMetric):
    """FAR: share (percent) of retained samples predicted as any forget class.

    ``FAR = 100 * #{i : y_i not in F, argmax(preds_i) in F} / #{i : y_i not in F}``. ``NaN`` if no
    retained sample was seen; lower is better.
    """

    higher_is_better = False

    def compute(self) -> Tensor:
        return self.counts().false_acceptance_rate()


class FalseRejectionRate(_UnlearningCountsMetric):
    """FRR: share (percent) of forget samples not predicted as their own class.

    ``FRR = 100 * #{i : y_i in F, argmax(preds_i) != y_i} / #{i : y_i in F}``: it equals
    ``100 - FA``. The paper's public code computes ``1 - RA`` instead, so this column differs from
    the paper's tables. After unlearning a high FRR means the forget classes are rejected, so
    higher is better. ``NaN`` if no forget sample was seen.
    """

    higher_is_better = True

    def compute(self) -> Tensor:
        return self.counts().false_rejection_rate()


class PrivacyErasureRate(_UnlearningCountsMetric):
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

    def __init__(self, forget_classes: Sequence[int], fa_before: float | Tensor, **kwargs: Any) -> None:
        super().__init__(forget_classes, **kwargs)
        self.fa_before = check_fa_before(fa_before)

    def compute(self) -> Tensor:
        return self.counts().privacy_erasure_rate(self.fa_before)


class ERB(_UnlearningCountsMetric):
    """ERB, qpae's erasure–retention balance: harmonic mean of erasure ``100 - FA`` and retention
    ``RA`` (percent), ``2 (100 - FA) RA / ((100 - FA) + RA)`` (:func:`erb`).

    This is qpae's measure, not the paper's: the paper's Table 2 values fit ``2·FA·RA/(FA+RA)``
    instead, reported as :class:`ERBPaper` (``ERB_paper``). ``0`` when the denominator is ``0``
    (``FA = 100`` and ``RA = 0``); ``NaN`` when no forget or no retained sample was seen. Higher
    is better.
    """

    higher_is_better = True

    def compute(self) -> Tensor:
        counts = self.counts()
        fa = counts.forget_accuracy()
        return erb(fa, counts.retain_accuracy()).to(fa.dtype)


class ERBPaper(_UnlearningCountsMetric):
    """ERB_paper: the formula the paper's Table 2 ERB values fit, ``2·FA·RA/(FA+RA)`` (percent;
    :func:`erb_paper`), from the same counts as :class:`ERB`.

    It is the harmonic mean of forget and retain accuracy, so it rises with FA: it reproduces the
    paper's numbers and is not a measure of erasure (``higher_is_better`` is ``None``). ``0`` when
    ``FA = RA = 0``; ``NaN`` when no forget or no retained sample was seen.
    """

    higher_is_better = None

    def compute(self) -> Tensor:
        counts = self.counts()
        fa = counts.forget_accuracy()
        return erb_paper(fa, counts.retain_accuracy()).to(fa.dtype)


def unlearning_metrics(
    forget_classes: Sequence[int], fa_before: float | Tensor | None = None, **kwargs: Any
) -> MetricCollection:
    """All unlearning metrics in a :class:`~torchmetrics.MetricCollection`.

    Keys: ``FA``, ``RA``, ``IL``, ``FAR``, ``FRR``, ``ERB``, ``ERB_paper``, plus ``PER`` only when
    ``fa_before`` (percent) is given. Typical use: compute ``FA`` of the original model with
    ``unlearning_metrics(F)``, then evaluate the unlearned model with
    ``unlearning_metrics(F, fa_before=that_fa)``. ``kwargs`` go to every metric (e.g.
    ``validate_args=False``); use ``.clone(prefix="val/")`` for prefixed names.

    The metrics share one compute group (same forget classes, same states): the collection's
    ``update`` updates the first metric only and the others read its states, so a batch is
    counted once, not once per metric. The functional form is
    :func:`qpae.metrics.functional.unlearning_scores`.
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
    return MetricCollection(metrics, compute_groups=[list(metrics)])
