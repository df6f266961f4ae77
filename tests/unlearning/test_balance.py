"""qpae's automatic λ: the rule on hand-made gradients, and the logit gradients it compares."""

import math

import pytest
import torch

from qpae.unlearning.balance import (
    balanced_lambda,
    entropy_logit_grad,
    lambda_for_batch,
    retained_ce_logit_grad,
)
from qpae.unlearning.phases import prediction_entropy


@pytest.mark.parametrize(
    ("g_retain", "g_entropy", "lam", "expected"),
    [
        (1.0, 4.0, 2.0, 0.25),  # the entropy term pulls 4× harder: λ shrinks until they match
        (3.0, 1.0, 2.0, 2.0),  # it pulls less than λ allows: λ is kept (a ceiling, never raised)
        (2.0, 2.0, 0.5, 0.5),
        (0.0, 1.0, 1.0, 0.0),  # nothing retained to protect in this batch: no entropy push
        (1.0, 0.0, 1.5, 1.5),  # predictions already uniform: the term has no gradient
        (0.0, 0.0, 1.0, 1.0),
    ],
)
def test_the_rule_on_hand_made_gradient_norms(g_retain, g_entropy, lam, expected):
    assert balanced_lambda(g_retain, g_entropy, lam) == pytest.approx(expected)


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_lambda_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="lambda"):
        balanced_lambda(1.0, 1.0, bad)


def test_the_logit_gradients_are_autograds():
    torch.manual_seed(0)
    logits = torch.randn(6, 5, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    is_forget = torch.tensor([True, False, False, True, False, False])
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    (ce * ~is_forget).sum().div(6).backward()
    assert torch.allclose(retained_ce_logit_grad(logits.detach(), labels, is_forget), logits.grad, atol=1e-6)
    logits.grad = None
    (-(prediction_entropy(logits) * is_forget).sum() / 6).backward()
    assert torch.allclose(entropy_logit_grad(logits.detach(), is_forget), logits.grad, atol=1e-6)


def test_a_confident_forget_batch_gets_a_smaller_lambda_than_asked():
    # forget samples far from uniform (large entropy gradient), retained ones nearly fitted
    logits = torch.tensor([[0.0, 6.0, 0.0, 0.0], [8.0, 0.0, 0.0, 0.0], [0.0, 0.0, 8.0, 0.0]])
    labels = torch.tensor([1, 0, 2])
    lam = lambda_for_batch(logits, labels, [1], lambda_max=4.0)
    assert 0.0 < lam < 4.0
    assert lambda_for_batch(logits, labels, [1], lambda_max=0.0) == 0.0
