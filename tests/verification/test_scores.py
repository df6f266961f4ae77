"""EER and minDCF on hand-made score sets whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from qpae.verification.scores import detection_summary, eer, min_dcf

# targets 0.9, 0.8, 0.3; non-targets 0.7, 0.2, 0.1. Rejecting below 0.7 misses one target (0.3)
# and accepts one non-target (0.7): P_miss = P_fa = 1/3, the EER.
SCORES = [0.9, 0.8, 0.3, 0.7, 0.2, 0.1]
LABELS = [1, 1, 1, 0, 0, 0]


def test_eer_of_a_hand_made_set():
    rate, threshold = eer(SCORES, LABELS)
    assert rate == pytest.approx(1 / 3) and threshold == pytest.approx(0.7)


def test_eer_of_separated_and_reversed_sets():
    assert eer([0.9, 0.8, 0.7, 0.3, 0.2, 0.1], LABELS)[0] == 0.0
    assert eer([0.1, 0.2, 0.3, 0.7, 0.8, 0.9], LABELS)[0] == 1.0
    assert eer([0.5, 0.5, 0.5, 0.5], [1, 1, 0, 0])[0] == pytest.approx(0.5)  # no information


def test_eer_interpolates_between_roc_points():
    # targets 0.9 and 0.5, non-targets 0.5 and 0.1: at threshold 0.9 P_miss 1/2, P_fa 0; at 0.5
    # (a tie) P_miss 0, P_fa 1/2. The rates cross halfway along that step: EER 1/4.
    assert eer([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0])[0] == pytest.approx(0.25)


def test_min_dcf_of_a_hand_made_set():
    # p = 0.01: normaliser min(0.01, 0.99) = 0.01. Best threshold 0.8: P_miss 1/3, P_fa 0 ->
    # cost 0.01/3, normalised 1/3.
    cost, threshold = min_dcf(SCORES, LABELS, 0.01)
    assert cost == pytest.approx(1 / 3) and threshold == pytest.approx(0.8)
    # p = 0.05: the same threshold, (0.05/3)/0.05 = 1/3
    assert min_dcf(SCORES, LABELS, 0.05)[0] == pytest.approx(1 / 3)
    assert min_dcf([0.9, 0.8, 0.7, 0.3, 0.2, 0.1], LABELS, 0.01)[0] == 0.0
    # no information: the trivial system (reject all) is the best one, cost 1
    assert min_dcf([0.5, 0.5, 0.5, 0.5], [1, 1, 0, 0], 0.01)[0] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(5))
def test_eer_matches_a_brute_force_sweep(seed):
    rng = np.random.default_rng(seed)
    target, nontarget = rng.normal(1.0, 1.0, 200), rng.normal(-1.0, 1.0, 300)
    scores = np.r_[target, nontarget]
    labels = np.r_[np.ones(200), np.zeros(300)]
    rate, _ = eer(scores, labels)
    grid = np.sort(scores)
    miss = np.array([(target < t).mean() for t in grid])
    fa = np.array([(nontarget >= t).mean() for t in grid])
    k = np.argmin(np.abs(miss - fa))
    assert rate == pytest.approx((miss[k] + fa[k]) / 2, abs=1 / 200)
    dcf = min((m * 0.01 + f * 0.99) / 0.01 for m, f in zip(miss, fa, strict=True))
    assert min_dcf(scores, labels, 0.01)[0] <= min(dcf, 1.0) + 1e-12


def test_summary_states_its_trial_counts():
    out = detection_summary(SCORES, LABELS)
    assert out["target_trials"] == 3 and out["nontarget_trials"] == 3
    assert out["EER"] == pytest.approx(100 / 3) and "minDCF@0.01" in out and "minDCF@0.05" in out


@pytest.mark.parametrize(
    ("scores", "labels", "match"),
    [
        ([0.1, 0.2], [1, 1], "non-target"),
        ([0.1, 0.2], [1], "labels"),
        ([0.1, float("nan")], [1, 0], "finite"),
    ],
)
def test_bad_score_sets_are_refused(scores, labels, match):
    with pytest.raises(ValueError, match=match):
        eer(scores, labels)


def test_p_target_must_be_a_probability():
    with pytest.raises(ValueError, match="p_target"):
        min_dcf(SCORES, LABELS, 1.0)
