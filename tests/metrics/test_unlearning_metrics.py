"""Hand-computed checks of the unlearning metrics in qpae.metrics.unlearning."""

from __future__ import annotations

import math
import os
import time
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

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

# K = 4 classes. Logits are log-probabilities, so softmax(logits) gives back exactly these rows.
PROBS = torch.tensor(
    [
        [0.1, 0.6, 0.2, 0.1],  # 0: target 1, predicted 1
        [0.7, 0.1, 0.1, 0.1],  # 1: target 1, predicted 0
        [0.5, 0.2, 0.2, 0.1],  # 2: target 0, predicted 0
        [0.1, 0.6, 0.2, 0.1],  # 3: target 2, predicted 1
        [0.1, 0.1, 0.1, 0.7],  # 4: target 3, predicted 3
        [0.2, 0.1, 0.6, 0.1],  # 5: target 2, predicted 2
    ]
)
LOGITS = PROBS.log()
TARGET = torch.tensor([1, 1, 0, 2, 3, 2])

# Forget class {1}: forget samples 0, 1; retained samples 2, 3, 4, 5.
#   FA  = 1/2 = 50;  RA = 3/4 = 75;  IL = (0.6 + 0.1)/2 = 35;  FAR = 1/4 = 25 (sample 3 -> class 1)
#   FRR = 1/2 = 50;  ERB = 2*50*75/(50 + 75) = 60;  PER(fa_before=80) = 100*(80 - 50)/80 = 37.5
#   ERB_paper = 2*FA*RA/(FA + RA) = 2*50*75/125 = 60 (equal to ERB only because FA = 100 - FA)
SINGLE = {
    "FA": 50.0,
    "RA": 75.0,
    "IL": 35.0,
    "FAR": 25.0,
    "FRR": 50.0,
    "ERB": 60.0,
    "ERB_paper": 60.0,
    "PER": 37.5,
}

# Forget classes {1, 3}: forget samples 0, 1, 4 (4 is correct with p=0.7 on its own class 3);
# retained samples 2, 3, 5.
#   FA = 2/3;  RA = 2/3;  IL = (0.6 + 0.1 + 0.7)/3 = 1.4/3;  FAR = 1/3;  FRR = 1/3
#   ERB = 2*(100/3)*(200/3)/100 = 400/9;  PER(fa_before=80) = 100*(80 - 200/3)/80 = 50/3
#   ERB_paper = 2*(200/3)*(200/3)/(400/3) = 200/3
MULTI = {
    "FA": 66.666667,
    "RA": 66.666667,
    "IL": 46.666667,
    "FAR": 33.333333,
    "FRR": 33.333333,
    "ERB": 44.444444,
    "ERB_paper": 66.666667,
    "PER": 16.666667,
}


def _values(metric_dict) -> dict[str, float]:
    return {k: float(v) for k, v in metric_dict.items()}


def _assert_close(actual: dict[str, float], expected: dict[str, float]) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, abs=1e-4), key


@pytest.mark.parametrize(
    ("cls", "key"),
    [
        (ForgetAccuracy, "FA"),
        (RetainAccuracy, "RA"),
        (InformationLeakage, "IL"),
        (FalseAcceptanceRate, "FAR"),
        (FalseRejectionRate, "FRR"),
        (ERB, "ERB"),
        (ERBPaper, "ERB_paper"),
    ],
)
def test_single_metric_hand_values(cls, key):
    metric = cls([1])
    metric.update(LOGITS, TARGET)
    assert float(metric.compute()) == pytest.approx(SINGLE[key], abs=1e-4)
    multi = cls([1, 3])
    multi.update(LOGITS, TARGET)
    assert float(multi.compute()) == pytest.approx(MULTI[key], abs=1e-4)


def test_privacy_erasure_rate_hand_values():
    metric = PrivacyErasureRate([1], fa_before=80.0)
    metric.update(LOGITS, TARGET)
    assert float(metric.compute()) == pytest.approx(37.5)
    # FA went up from 25 to 50: PER is negative, not clipped
    worse = PrivacyErasureRate([1], fa_before=torch.tensor(25.0))
    worse.update(LOGITS, TARGET)
    assert float(worse.compute()) == pytest.approx(-100.0)
    # nothing to erase
    nothing = PrivacyErasureRate([1], fa_before=0.0)
    nothing.update(LOGITS, TARGET)
    assert float(nothing.compute()) == 0.0


def test_collection_single_and_multi():
    _assert_close(_values(_compute(unlearning_metrics([1], fa_before=80.0))), SINGLE)
    _assert_close(_values(_compute(unlearning_metrics([1, 3], fa_before=80.0))), MULTI)
    without_per = unlearning_metrics([1])
    assert set(without_per.keys()) == {"FA", "RA", "IL", "FAR", "FRR", "ERB", "ERB_paper"}
    # every key of the collection has its place in the paper's column order, and nothing else
    assert set(unlearning_metrics([1], fa_before=80.0).keys()) == set(METRIC_ORDER)
    assert METRIC_ORDER == ("FA", "FAR", "RA", "FRR", "PER", "IL", "ERB", "ERB_paper")


def _compute(collection, splits=((0, 6),)):
    for start, stop in splits:
        collection.update(LOGITS[start:stop], TARGET[start:stop])
    return collection.compute()


def test_two_updates_equal_one_update_on_concatenation():
    once = _values(_compute(unlearning_metrics([1, 3], fa_before=80.0)))
    twice = _values(_compute(unlearning_metrics([1, 3], fa_before=80.0), splits=((0, 2), (2, 6))))
    assert once == twice
    for cls in (
        ForgetAccuracy,
        RetainAccuracy,
        InformationLeakage,
        FalseAcceptanceRate,
        FalseRejectionRate,
        ERB,
        ERBPaper,
    ):
        a, b = cls([1, 3]), cls([1, 3])
        a.update(LOGITS, TARGET)
        b.update(LOGITS[:3], TARGET[:3])
        b.update(LOGITS[3:], TARGET[3:])
        assert torch.equal(a.compute(), b.compute()), cls.__name__


def test_reset_starts_over():
    collection = unlearning_metrics([1], fa_before=80.0)
    # first fill it with something different: every sample predicted correctly
    collection.update(torch.nn.functional.one_hot(TARGET, 4).float() * 5, TARGET)
    assert float(collection["FA"].compute()) == 100.0
    collection.reset()
    _assert_close(_values(_compute(collection)), SINGLE)

    metric = InformationLeakage([1])
    metric.update(LOGITS, TARGET)
    metric.reset()
    metric.update(LOGITS[:1], TARGET[:1])
    assert float(metric.compute()) == pytest.approx(60.0)


def test_update_does_not_compute_and_forward_gives_batch_value():
    metric = ForgetAccuracy([1])
    batch_value = metric(LOGITS[:1], TARGET[:1])  # forward: value on this batch only
    assert float(batch_value) == 100.0
    metric.update(LOGITS[1:2], TARGET[1:2])
    assert float(metric.compute()) == 50.0


def test_nan_when_no_relevant_samples():
    retained_only = unlearning_metrics([1], fa_before=80.0)
    retained_only.update(LOGITS[2:], TARGET[2:])
    values = _values(retained_only.compute())
    for key in ("FA", "IL", "FRR", "PER", "ERB", "ERB_paper"):
        assert math.isnan(values[key]), key
    assert values["RA"] == 75.0 and values["FAR"] == 25.0

    forget_only = unlearning_metrics([1])
    forget_only.update(LOGITS[:2], TARGET[:2])
    values = _values(forget_only.compute())
    for key in ("RA", "FAR", "ERB", "ERB_paper"):
        assert math.isnan(values[key]), key
    assert values["FA"] == 50.0

    # PER with fa_before == 0 but no forget sample seen is still NaN (no measurement)
    per = PrivacyErasureRate([1], fa_before=0.0)
    per.update(LOGITS[2:], TARGET[2:])
    assert math.isnan(float(per.compute()))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about compute before update
        assert math.isnan(float(ForgetAccuracy([1]).compute()))


def test_erb_zero_denominator():
    # forget sample recognised (FA = 100), retained sample misclassified (RA = 0) -> ERB = 0
    logits = torch.tensor([[0.0, 5.0, 0.0, 0.0], [0.0, 0.0, 0.0, 5.0]])
    metric = ERB([1])
    metric.update(logits, torch.tensor([1, 2]))
    assert float(metric.compute()) == 0.0


# Rows of the paper's Table 2 (AudioMNIST): (FA, RA, the paper's ERB).
PAPER_TABLE_ROWS = (
    ("ResNet18 original", 99.04, 96.25, 97.62),
    ("ViT SSD", 100.0, 61.93, 76.49),
)


@pytest.mark.parametrize(("row", "fa", "ra", "paper_erb"), PAPER_TABLE_ROWS)
def test_erb_paper_reproduces_the_papers_table(row, fa, ra, paper_erb):
    # the table prints FA, RA and ERB to two decimals: each is within 0.005 of its exact value,
    # so the formula on the printed FA and RA lands within 0.01 of the printed ERB
    assert float(erb_paper(fa, ra)) == pytest.approx(paper_erb, abs=0.01), row
    # qpae's ERB (erasure 100 - FA against retention) is a different number on the same row
    assert abs(float(erb(fa, ra)) - paper_erb) > 10, row


def _counts_with(fa_correct: int, forget_n: int, ra_correct: int, retain_n: int):
    """Logits/targets with forget class 0: ``fa_correct`` of ``forget_n`` forget samples and
    ``ra_correct`` of ``retain_n`` retained samples (class 1) predicted correctly."""
    target = torch.tensor([0] * forget_n + [1] * retain_n)
    pred = torch.tensor(
        [0] * fa_correct + [2] * (forget_n - fa_correct) + [1] * ra_correct + [2] * (retain_n - ra_correct)
    )
    return torch.nn.functional.one_hot(pred, 3).float(), target


@pytest.mark.parametrize(
    ("row", "counts", "paper_erb"),
    [
        ("ResNet18 original", (2476, 2500, 385, 400), 97.62),  # FA 99.04, RA 96.25
        ("ViT SSD", (100, 100, 6193, 10000), 76.49),  # FA 100, RA 61.93
    ],
)
def test_erb_paper_metric_class_on_the_tables_counts(row, counts, paper_erb):
    logits, target = _counts_with(*counts)
    metric = ERBPaper([0])
    metric.update(logits[::2], target[::2])  # two batches: the counts accumulate
    metric.update(logits[1::2], target[1::2])
    assert float(metric.compute()) == pytest.approx(paper_erb, abs=0.01), row
    collection = unlearning_metrics([0])
    collection.update(logits, target)
    values = _values(collection.compute())
    assert values["ERB_paper"] == pytest.approx(paper_erb, abs=0.01)
    assert values["ERB"] == pytest.approx(float(erb(values["FA"], values["RA"])), abs=1e-4)


def test_far_counts_any_forget_class():
    # forget {1, 3}; retained targets 0, 0, 2: predicted 3 (forget), 1 (forget), 0 (not forget)
    logits = torch.tensor([[0.0, 0.0, 0.0, 9.0], [0.0, 9.0, 0.0, 0.0], [9.0, 0.0, 0.0, 0.0]])
    metric = FalseAcceptanceRate([1, 3])
    metric.update(logits, torch.tensor([0, 0, 2]))
    assert float(metric.compute()) == pytest.approx(200.0 / 3.0)


def test_frr_is_not_one_minus_retain_accuracy():
    frr, ra = FalseRejectionRate([1]), RetainAccuracy([1])
    frr.update(LOGITS, TARGET)
    ra.update(LOGITS, TARGET)
    assert float(frr.compute()) == 50.0 and 100.0 - float(ra.compute()) == 25.0


def test_metric_flags():
    for cls in (
        ForgetAccuracy,
        RetainAccuracy,
        InformationLeakage,
        FalseAcceptanceRate,
        FalseRejectionRate,
        ERB,
        ERBPaper,
    ):
        metric = cls([1])
        assert metric.is_differentiable is False and metric.full_state_update is False
    assert ForgetAccuracy.higher_is_better is False
    assert RetainAccuracy.higher_is_better is True
    assert InformationLeakage.higher_is_better is False
    assert FalseAcceptanceRate.higher_is_better is False
    assert FalseRejectionRate.higher_is_better is True
    assert PrivacyErasureRate.higher_is_better is True
    assert ERB.higher_is_better is True
    assert ERBPaper.higher_is_better is None  # it rises with FA: not a measure of erasure


def test_input_errors():
    metric = ForgetAccuracy([1, 3])
    with pytest.raises(ValueError, match="2-D"):
        metric.update(LOGITS[0], TARGET[:1])
    with pytest.raises(ValueError, match="K=3"):
        metric.update(LOGITS[:, :3], TARGET)
    with pytest.raises(ValueError, match="1-D"):
        metric.update(LOGITS, TARGET[:5])
    with pytest.raises(ValueError, match="1-D"):
        metric.update(LOGITS, TARGET.unsqueeze(1))
    with pytest.raises(ValueError, match="integer"):
        metric.update(LOGITS, TARGET.float())
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        metric.update(LOGITS, torch.tensor([1, 1, 0, 2, 3, 4]))
    with pytest.raises(ValueError, match="empty"):
        ForgetAccuracy([])
    with pytest.raises(ValueError, match="non-negative"):
        RetainAccuracy([-1])
    with pytest.raises(TypeError, match="ints"):
        ERB([1.5])
    for bad in (-1.0, 101.0, float("nan")):
        with pytest.raises(ValueError, match="fa_before"):
            PrivacyErasureRate([1], fa_before=bad)


# --- DDP: two CPU processes, gloo ------------------------------------------------------------

DDP_SPLITS = ((0, 2), (2, 6))  # uneven halves: rank 0 gets 2 samples, rank 1 gets 4


def _ddp_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        collection = unlearning_metrics([1, 3], fa_before=80.0)
        start, stop = DDP_SPLITS[rank]
        collection.update(LOGITS[start:stop], TARGET[start:stop])
        values = _values(collection.compute())
        torch.save(values, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
def test_ddp_two_processes_match_single_process(tmp_path):
    expected = _values(_compute(unlearning_metrics([1, 3], fa_before=80.0)))
    init_file = str(tmp_path / "dist_init")
    context = mp.spawn(_ddp_worker, args=(2, init_file, str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + 60.0
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.terminate()
            pytest.fail("DDP workers did not finish within 60 s")
    # Without the sum-reduction across ranks, rank 0 (forget samples only) would report RA = NaN
    # and rank 1 would report FA = 100 * 1/1, so matching `expected` on both proves the sync.
    for rank in range(2):
        values = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert values.keys() == expected.keys()
        for key in expected:
            assert values[key] == pytest.approx(expected[key], abs=1e-5), (rank, key)
    _assert_close(expected, MULTI)
