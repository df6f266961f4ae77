"""Per-clip ε (qpae.audit.epsilon) on hand-made confidence distributions with known answers."""

import math

import numpy as np
import pytest
import torch

from qpae.audit.epsilon import (
    DELTA,
    Epsilons,
    bucket_points,
    clip_epsilon,
    epsilon_ceiling,
    epsilons,
    forget_score,
    logit_scaled_confidence,
    lower_ceiling,
    upper_rate,
    utility_factors,
)


def test_logit_scaled_confidence_is_log_odds_of_the_true_class_without_saturating():
    logits = torch.tensor([[0.0, math.log(3.0)], [1000.0, 0.0], [0.0, 0.0]])
    conf = logit_scaled_confidence(logits, torch.tensor([1, 0, 1]))
    # p = 3/4 → log(3/4) − log(1/4) = log 3; a softmax would round p to 1 and give inf
    assert conf.tolist() == pytest.approx([math.log(3.0), 1000.0, 0.0])
    three = logit_scaled_confidence(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0]))
    assert three.item() == pytest.approx(2.0 - math.log(2.0))


def test_the_ceiling_is_one_model_on_the_wrong_side_of_each():
    assert epsilon_ceiling(16, 16) == pytest.approx(math.log(15 - 16 * DELTA))
    assert epsilon_ceiling(2, 2) == 0.0  # never negative
    with pytest.raises(ValueError, match="at least 2"):
        epsilon_ceiling(1, 16)


def test_clopper_pearson_upper_bound_of_zero_errors_has_its_closed_form():
    assert upper_rate(np.array([0]), 10, 0.025)[0] == pytest.approx(1 - 0.025 ** (1 / 10))
    assert upper_rate(np.array([10]), 10, 0.025)[0] == 1.0
    assert np.all(np.diff(upper_rate(np.arange(11), 10, 0.025)) > 0)


def test_a_known_overlap_gives_the_hand_computed_epsilon():
    # a = 1..8, b = 5..12: the best rule (threshold 6 or 8) errs on 3/8 of one side and 1/8 of
    # the other: ε = log((1 − δ − 3/8) / (1/8)) = log(5 − 8δ)
    a, b = np.arange(1.0, 9.0), np.arange(5.0, 13.0)
    eps, capped, lower = clip_epsilon(a, b)
    assert eps == pytest.approx(math.log(5 - 8 * DELTA)) and not capped
    assert 0 <= lower < eps


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_identical_distributions_give_a_lower_bound_near_zero_and_separable_ones_the_ceiling(seed):
    rng = np.random.default_rng(seed)
    same = epsilons(rng.normal(size=(16, 100)), rng.normal(size=(16, 100)))
    # measured over seeds 0–3: median 0, 95th percentile ≤ 0.2 (the bound's selection noise)
    assert np.median(same.lower) == 0.0 and np.percentile(same.lower, 95) < 0.6
    assert not same.capped.any()
    apart = epsilons(rng.normal(size=(16, 100)), rng.normal(loc=20.0, size=(16, 100)))
    assert apart.capped.all() and np.allclose(apart.values, apart.ceiling)
    assert np.allclose(apart.lower, apart.lower_ceiling) and apart.lower_ceiling == lower_ceiling(16, 16)
    assert forget_score(apart) == 0.0


def test_the_lower_bounds_resolution_grows_with_n():
    assert lower_ceiling(4, 4) == 0.0  # four models cannot prove anything at 95%
    assert 0 < lower_ceiling(8, 8) < lower_ceiling(16, 16) < lower_ceiling(32, 32) < epsilon_ceiling(32, 32)


def test_constant_ensembles_and_a_near_deterministic_one():
    assert clip_epsilon(np.ones(8), np.ones(8))[:2] == (0.0, False)
    assert clip_epsilon(np.ones(8), 2 * np.ones(8))[1] is True
    # one ensemble's range under 1% of the other's: the challenge's rule says separable
    peaky = 5 + 1e-4 * np.arange(8)
    assert clip_epsilon(peaky, np.linspace(0.0, 10.0, 8))[1] is True


def test_a_finite_epsilon_that_equals_the_ceiling_is_not_capped():
    # one model on the wrong side of each: a measured ε of log 3, not "at least"
    eps, capped, _ = clip_epsilon(np.array([1.0, 2.0, 3.0, 10.0]), np.array([0.0, 5.0, 6.0, 7.0]))
    assert eps == pytest.approx(epsilon_ceiling(4, 4)) and not capped


def test_non_finite_confidences_are_refused():
    with pytest.raises(ValueError, match="finite"):
        clip_epsilon(np.array([0.0, np.nan, 1.0]), np.zeros(3))
    with pytest.raises(ValueError, match="same clips"):
        epsilons(np.zeros((4, 3)), np.zeros((4, 2)))


def test_bucketed_score_on_a_hand_computed_case():
    # N = 16: buckets up to ceil(log 15) = 3, worth 1, 1/2, …, 1/32
    assert [p for _, p in bucket_points(16)] == [1, 0.5, 0.25, 0.125, 0.0625, 0.03125]
    eps = Epsilons(
        values=np.array([0.2, 0.7, 2.9, 2.7]),
        capped=np.array([False, False, False, True]),
        lower=np.zeros(4),
        ceiling=epsilon_ceiling(16, 16),
        lower_ceiling=lower_ceiling(16, 16),
        n=(16, 16),
    )
    assert forget_score(eps) == pytest.approx((1 + 0.5 + 1 / 32 + 0) / 4)


def test_utility_factors_are_ratios_of_means():
    factors = utility_factors(
        {"RA": [90.0, 94.0], "test_acc": [80.0]}, {"RA": [92.0, 92.0], "test_acc": [100.0]}
    )
    assert factors == pytest.approx({"RA": 1.0, "test_acc": 0.8})
