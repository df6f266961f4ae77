"""Selective Synaptic Dampening (Foster et al., AAAI 2024), one shot, no training."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qpae.unlearning.methods.base import TrainingData, UnlearningMethod
from qpae.unlearning.request import ForgetRequest


def importances(net: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
    """Mean over batches of the squared gradient of the mean cross-entropy, in eval mode
    (the diagonal Fisher approximation SSD uses)."""
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    sums = {n: torch.zeros_like(p) for n, p in net.named_parameters() if p.requires_grad}
    count = 0
    for x, y in batches:
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(x.to(device)), y.to(device)).backward()
        for n, p in net.named_parameters():
            if p.grad is not None:
                sums[n] += p.grad.detach() ** 2
        count += 1
    net.zero_grad(set_to_none=True)
    net.train(was_training)
    return {n: s / max(count, 1) for n, s in sums.items()}


def dampen(
    param: Tensor, importance_all: Tensor, importance_forget: Tensor, alpha: float, lambda_: float
) -> Tensor:
    """Parameters much more important to the forget set (I_f > α·I_D) are multiplied by
    β = min(λ·I_D / I_f, 1); all others stay."""
    selected = importance_forget > alpha * importance_all
    beta = (lambda_ * importance_all / importance_forget.clamp_min(1e-30)).clamp(max=1.0)
    return torch.where(selected, param * beta, param)


class SelectiveSynapticDampening(UnlearningMethod):
    """SSD: importances on the full training set (I_D) and on the forget set (I_f); dampen.

    Defaults follow the paper: λ = 1, α = 10 for ResNet18 (use α = 5 for ViT).
    """

    name = "ssd"

    def __init__(self, alpha: float = 10.0, lambda_: float = 1.0, **kwargs) -> None:
        kwargs.setdefault("epochs", 0)
        super().__init__(**kwargs)
        if self.epochs != 0:
            raise ValueError("ssd is one-shot: epochs must be 0")
        self.alpha, self.lambda_ = alpha, lambda_

    @torch.no_grad()
    def _apply(self, net: nn.Module, i_all: dict[str, Tensor], i_forget: dict[str, Tensor]) -> None:
        for n, p in net.named_parameters():
            if n in i_all:
                p.copy_(dampen(p, i_all[n], i_forget[n], self.alpha, self.lambda_))

    def on_fit_start(self, net: nn.Module, request: ForgetRequest, data: TrainingData) -> None:
        i_all = importances(net, data.all())
        i_forget = importances(net, data.forget())
        self._apply(net, i_all, i_forget)
