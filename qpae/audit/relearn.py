"""Relearn time: how many optimisation steps bring a forgotten class back?

An honest unlearning relearns about as fast as the retrained model — neither much faster
(masking: negating the head row relearns in 10–25 steps where retrain needs 55 to >200) nor
much slower (over-suppression is a fingerprint too).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qpae.data.windows_dataset import WindowDataset, count, take
from qpae.metrics.functional import forget_accuracy
from qpae.models.factory import classifier_head


@torch.no_grad()
def _accuracy(net: nn.Module, x: Tensor, y: Tensor) -> float:
    # FA by the metrics' own functional form (every clip here is a forget clip): the same number,
    # rounded the same way, as qpae-unlearn and the audit report for the same predictions
    return float(forget_accuracy(net(x), y, y.unique()))


def relearn_curve(
    net: nn.Module,
    relearn: tuple[Tensor, Tensor],
    retain: tuple[Tensor, Tensor] | WindowDataset,
    forget_test: tuple[Tensor, Tensor],
    head_only: bool = False,
    lr: float = 1e-4,
    max_steps: int = 200,
    seed: int = 0,
    eval_every: int = 1,
) -> list[float]:
    """Fine-tune a copy on the relearn clips (plus as many random retained clips each step, so
    that predicting the forget class everywhere is not a shortcut); return forget-test FA (%)
    before the first step and after each step. Batch norm statistics stay frozen (eval mode).

    With ``eval_every`` = n, FA is measured every n steps (evaluation costs as much as the
    step itself) and carried over in between, so a step count has a resolution of n."""
    model = copy.deepcopy(net).eval()
    params = list(classifier_head(model).parameters()) if head_only else list(model.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(seed)
    curve = [_accuracy(model, *forget_test)]
    n_retain = count(retain)
    for _ in range(max_steps):
        pick = torch.randint(n_retain, (len(relearn[0]),), generator=g)
        rx, ry = take(retain, pick)
        x = torch.cat([relearn[0], rx])
        y = torch.cat([relearn[1], ry])
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        step = len(curve)
        curve.append(_accuracy(model, *forget_test) if step % eval_every == 0 else curve[-1])
    return curve


def steps_to(curve: list[float], threshold: float) -> int | None:
    """First step at which FA ≥ threshold (0 = already there), None if never within the run."""
    return next((step for step, fa in enumerate(curve) if fa >= threshold), None)
