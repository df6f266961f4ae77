"""An automatic λ for QPAudioEraser's uncertainty loss (qpae's rule, not the paper's).

The paper fixes λ (1 by default) and reports that λ = 2 wrecks retained accuracy on ResNet18:
its open question 4 is how to choose it without a search. The entropy term and the retained
cross-entropy pull on the same shared weights through the logits, so qpae compares their pulls
where they meet, on the logits, batch by batch:

    g_R = ∂ CE_retained / ∂z       (mean over the batch; rows of retained samples: (p − onehot)/N)
    g_H = ∂ (−H_forget) / ∂z       (rows of forget samples: p ⊙ (log p + H)/N)
    λ_eff = min(λ, ‖g_R‖ / ‖g_H‖)

λ becomes a ceiling: the entropy term's pull on the logits never exceeds the retained
cross-entropy's, whatever λ the user asked for, so a large λ cannot overwhelm what keeps the
retained classes apart. A batch without retained samples gets λ_eff = 0 (its forget samples are
still pulled towards the uniform target by the cross-entropy to 1/K, which has the same
minimiser as −H). λ_eff is a number, computed without gradient: the loss's form is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F_nn
from torch import Tensor

from qpae.unlearning.phases import check_lambda

__all__ = [
    "LAMBDA_RULES",
    "balanced_lambda",
    "entropy_logit_grad",
    "retained_ce_logit_grad",
    "lambda_for_batch",
]

LAMBDA_RULES = ("fixed", "balanced")


def retained_ce_logit_grad(logits: Tensor, labels: Tensor, is_forget: Tensor) -> Tensor:
    """``∂/∂z`` of ``(1/N)·Σ_{i retained} CE(z_i, y_i)``: ``(p_i − onehot(y_i))/N`` on retained rows, 0
    elsewhere."""
    p = F_nn.softmax(logits, dim=1)
    one_hot = F_nn.one_hot(labels.long(), logits.shape[1]).to(p.dtype)
    return torch.where(is_forget.unsqueeze(1), torch.zeros_like(p), p - one_hot) / logits.shape[0]


def entropy_logit_grad(logits: Tensor, is_forget: Tensor) -> Tensor:
    """``∂/∂z`` of ``−(1/N)·Σ_{i forget} H(p_i)``: ``p_i ⊙ (log p_i + H_i)/N`` on forget rows, 0 elsewhere."""
    log_p = F_nn.log_softmax(logits, dim=1)
    p = log_p.exp()
    entropy = -(p * log_p).sum(dim=1, keepdim=True)
    grad = p * (log_p + entropy)
    return torch.where(is_forget.unsqueeze(1), grad, torch.zeros_like(grad)) / logits.shape[0]


def balanced_lambda(retain_grad_norm: float, entropy_grad_norm: float, lambda_max: float) -> float:
    """The rule on two gradient norms: ``min(λ, ‖g_R‖/‖g_H‖)``; ``λ`` when the entropy term has no
    gradient (predictions already uniform), ``0`` when there is no retained gradient to protect
    but the entropy term has one."""
    check_lambda(lambda_max)
    if retain_grad_norm < 0 or entropy_grad_norm < 0:
        raise ValueError("gradient norms are >= 0")
    if entropy_grad_norm == 0:
        return lambda_max
    return min(lambda_max, retain_grad_norm / entropy_grad_norm)


@torch.no_grad()
def lambda_for_batch(logits: Tensor, labels: Tensor, forgotten: Sequence[int], lambda_max: float) -> float:
    """:func:`balanced_lambda` for one batch's logits (no gradient flows through the result)."""
    is_forget = torch.isin(labels, torch.tensor(list(forgotten), device=labels.device))
    logits = logits.detach().float()
    g_r = retained_ce_logit_grad(logits, labels, is_forget).norm().item()
    g_h = entropy_logit_grad(logits, is_forget).norm().item()
    return balanced_lambda(g_r, g_h, lambda_max)
