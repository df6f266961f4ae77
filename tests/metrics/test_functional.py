"""The functional forms of qpae.metrics.functional against the metric classes, and the one shared
state of the metric collection."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics import MetricCollection

from qpae.metrics import (
    ERB,
    METRIC_ORDER,
    ERBPaper,
    FalseAcceptanceRate,
    FalseRejectionRate,
    ForgetAccuracy,
    InformationLeakage,
    PrivacyErasureRate,
    RetainAccuracy,
    erb,
    erb_paper,
    unlearning_metrics,
)
from qpae.metrics import functional as MF
from qpae.metrics.functional import COUNT_NAMES, UnlearningCounts, unlearning_counts, unlearning_scores

# K = 4; forget class {1}: FA 1/2, RA 3/4, IL (0.6 + 0.1)/2, FAR 1/4 (the hand example of
# test_unlearning_metrics.py)
PROBS = torch.tensor(
    [
        [0.1, 0.6, 0.2, 0.1],
        [0.7, 0.1, 0.1, 0.1],
        [0.5, 0.2, 0.2, 0.1],
        [0.1, 0.6, 0.2, 0.1],
        [0.1, 0.1, 0.1, 0.7],
        [0.2, 0.1, 0.6, 0.1],
    ]
)
LOGITS = PROBS.log()
TARGET = torch.tensor([1, 1, 0, 2, 3, 2])

CLASSES = {
    "FA": (ForgetAccuracy, MF.forget_accuracy),
    "RA": (RetainAccuracy, MF.retain_accuracy),
    "IL": (InformationLeakage, MF.information_leakage),
    "FAR": (FalseAcceptanceRate, MF.false_acceptance_rate),
    "FRR": (FalseRejectionRate, MF.false_rejection_rate),
}
SEEDS = (0, 1, 2, 3, 4)


def _random_case(seed: int):
    """Random logits and labels, a random forget set, and random batch boundaries."""
    g = torch.Generator().manual_seed(seed)
    num_classes = int(torch.randint(3, 12, (1,), generator=g))
    n = int(torch.randint(40, 200, (1,), generator=g))
    # a peaked model, so accuracies are neither ~0 nor ~100
    target = torch.randint(num_classes, (n,), generator=g)
    logits = torch.randn(n, num_classes, generator=g) + 2.0 * torch.nn.functional.one_hot(target, num_classes)
    num_forget = int(torch.randint(1, num_classes, (1,), generator=g))
    forget = torch.randperm(num_classes, generator=g)[:num_forget].tolist()
    cuts = sorted(torch.randint(1, n, (3,), generator=g).tolist())
    batches = list(zip([0, *cuts], [*cuts, n], strict=True))
    fa_before = float(torch.rand(1, generator=g)) * 100.0
    return logits, target, forget, batches, fa_before


def _assert_same(actual, expected, key) -> None:
    """Counts give bit-identical ratios; IL's float sum depends on the batching, so only close."""
    a, e = float(actual), float(expected)
    if key == "IL":
        assert a == pytest.approx(e, rel=1e-6), key
    else:
        assert a == e or (math.isnan(a) and math.isnan(e)), (key, a, e)


def test_counts_of_the_hand_example():
    counts = unlearning_counts(LOGITS, TARGET, [1])
    assert isinstance(counts, UnlearningCounts) and counts._fields == COUNT_NAMES
    as_ints = {name: int(getattr(counts, name)) for name in COUNT_NAMES if name != "forget_prob_sum"}
    assert as_ints == {
        "forget_correct": 1,
        "forget_total": 2,
        "retain_correct": 3,
        "retain_total": 4,
        "retain_as_forget": 1,
    }
    assert float(counts.forget_prob_sum) == pytest.approx(0.7)
    assert float(counts.forget_accuracy()) == 50.0 and float(counts.false_rejection_rate()) == 50.0
    assert float(counts.retain_accuracy()) == 75.0 and float(counts.false_acceptance_rate()) == 25.0
    assert float(counts.information_leakage()) == pytest.approx(35.0)
    assert float(counts.privacy_erasure_rate(80.0)) == pytest.approx(37.5)


@pytest.mark.parametrize("seed", SEEDS)
def test_functional_forms_equal_the_metric_classes(seed):
    logits, target, forget, batches, fa_before = _random_case(seed)
    for key, (cls, function) in CLASSES.items():
        metric = cls(forget)
        for start, stop in batches:
            metric.update(logits[start:stop], target[start:stop])
        _assert_same(metric.compute(), function(logits, target, forget), key)
    per = PrivacyErasureRate(forget, fa_before=fa_before)
    for start, stop in batches:
        per.update(logits[start:stop], target[start:stop])
    _assert_same(per.compute(), MF.privacy_erasure_rate(logits, target, forget, fa_before), "PER")
    fa, ra = MF.forget_accuracy(logits, target, forget), MF.retain_accuracy(logits, target, forget)
    for cls, function, key in ((ERB, erb, "ERB"), (ERBPaper, erb_paper, "ERB_paper")):
        metric = cls(forget)
        for start, stop in batches:
            metric.update(logits[start:stop], target[start:stop])
        _assert_same(metric.compute(), function(fa, ra).to(fa.dtype), key)


@pytest.mark.parametrize("seed", SEEDS)
def test_unlearning_scores_equal_the_collection(seed):
    logits, target, forget, batches, fa_before = _random_case(seed)
    for before in (None, fa_before):
        collection = unlearning_metrics(forget, fa_before=before)
        for start, stop in batches:
            collection.update(logits[start:stop], target[start:stop])
        expected = collection.compute()
        scores = unlearning_scores(logits, target, forget, fa_before=before)
        assert set(scores) == set(expected)
        assert [k for k in METRIC_ORDER if k in scores] == list(scores)  # the paper's order
        for key in expected:
            _assert_same(scores[key], expected[key], key)


def test_functional_forms_on_empty_sets_and_bad_inputs():
    retained_only = unlearning_scores(LOGITS[2:], TARGET[2:], [1], fa_before=0.0)
    for key in ("FA", "IL", "FRR", "PER", "ERB", "ERB_paper"):
        assert math.isnan(float(retained_only[key])), key
    assert float(retained_only["RA"]) == 75.0
    assert float(MF.privacy_erasure_rate(LOGITS, TARGET, [1], fa_before=0.0)) == 0.0
    # the messages of the metric classes
    with pytest.raises(ValueError, match="empty"):
        MF.forget_accuracy(LOGITS, TARGET, [])
    with pytest.raises(TypeError, match="ints"):
        MF.retain_accuracy(LOGITS, TARGET, [1.5])
    with pytest.raises(ValueError, match="K=3"):
        MF.forget_accuracy(LOGITS[:, :3], TARGET, [3])
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        MF.forget_accuracy(LOGITS, torch.tensor([1, 1, 0, 2, 3, 4]), [1])
    MF.forget_accuracy(LOGITS, torch.tensor([1, 1, 0, 2, 3, 4]), [1], validate_args=False)
    with pytest.raises(ValueError, match="fa_before"):
        MF.privacy_erasure_rate(LOGITS, TARGET, [1], fa_before=101.0)
    # forget classes as a tensor, with duplicates
    assert float(MF.forget_accuracy(LOGITS, TARGET, torch.tensor([1, 1]))) == 50.0


def test_every_metric_has_the_same_six_states():
    for cls in (*(c for c, _ in CLASSES.values()), ERB, ERBPaper):
        assert tuple(cls([1])._defaults) == COUNT_NAMES, cls.__name__
    assert tuple(PrivacyErasureRate([1], fa_before=50.0)._defaults) == COUNT_NAMES
    for name in COUNT_NAMES:
        assert ForgetAccuracy([1])._reductions[name].__name__ == "dim_zero_sum", name


def test_the_collection_is_one_compute_group_that_counts_each_batch_once():
    collection = unlearning_metrics([1], fa_before=80.0)
    groups = list(collection.compute_groups.values())
    assert len(groups) == 1 and sorted(groups[0]) == sorted(collection.keys())
    collection.update(LOGITS[:3], TARGET[:3])
    collection.update(LOGITS[3:], TARGET[3:])
    # every member reads the first member's states: one set of counts, updated once per batch
    members = dict(collection.items(copy_state=False))  # (collection[key] would copy the states)
    first = members["FA"]
    for key, metric in members.items():
        for name in COUNT_NAMES:
            assert getattr(metric, name) is getattr(first, name), (key, name)
    assert int(first.forget_total) == 2 and int(first.retain_total) == 4
    # left to itself torchmetrics finds the same single group after the first update
    automatic = MetricCollection({key: type(m)([1]) for key, m in collection.items() if key != "PER"})
    automatic.update(LOGITS, TARGET)
    assert len(automatic.compute_groups) == 1
    separate = unlearning_metrics([1], fa_before=80.0)
    separate = MetricCollection(dict(separate.items()), compute_groups=False)
    separate.update(LOGITS, TARGET)
    assert {k: float(v) for k, v in separate.compute().items()} == {
        k: float(v) for k, v in collection.compute().items()
    }


def test_collection_forward_gives_batch_values_and_accumulates_once():
    collection = unlearning_metrics([1], fa_before=80.0)
    first = collection(LOGITS[:2], TARGET[:2])  # forget samples only
    assert float(first["FA"]) == 50.0 and math.isnan(float(first["RA"]))
    collection(LOGITS[2:], TARGET[2:])
    expected = unlearning_scores(LOGITS, TARGET, [1], fa_before=80.0)
    for key, value in collection.compute().items():
        _assert_same(value, expected[key], key)
    # forward leaves each member its own (equal) states; the next update counts the batch once
    collection.update(LOGITS, TARGET)
    twice = unlearning_scores(torch.cat([LOGITS, LOGITS]), torch.cat([TARGET, TARGET]), [1], fa_before=80.0)
    for key, value in collection.compute().items():
        _assert_same(value, twice[key], key)
