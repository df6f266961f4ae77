"""Fisher Forgetting (Golatkar et al., CVPR 2020), one shot, no training."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from qpae.models.factory import classifier_head
from qpae.unlearning.methods.base import TrainingData, UnlearningMethod
from qpae.unlearning.request import ForgetRequest


def fisher_diagonal(
    net: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], num_classes: int
) -> dict[str, Tensor]:
    """Diagonal Fisher on the given samples, per sample and summed over classes weighted by
    the predicted probabilities: F = mean_x Σ_k p_k(x) · (∂ log p_k(x) / ∂θ)², in eval mode.

    Per-sample gradients come from ``torch.func.vmap`` rather than one backward per sample.
    """
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    params = {n: p.detach() for n, p in net.named_parameters() if p.requires_grad}
    buffers = dict(net.named_buffers())

    def nll(p: dict[str, Tensor], x: Tensor, k: Tensor) -> Tensor:
        logits = functional_call(net, (p, buffers), (x.unsqueeze(0),))
        return F.cross_entropy(logits, k.unsqueeze(0))

    per_sample_grad = vmap(grad(nll), in_dims=(None, 0, 0))
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    count = 0
    for x, _ in batches:
        x = x.to(device)
        with torch.no_grad():
            probs = F.softmax(net(x), dim=1)
        for k in range(num_classes):
            grads = per_sample_grad(params, x, torch.full((len(x),), k, device=device))
            weight = probs[:, k]
            for n, g in grads.items():
                total[n] += torch.einsum("b,b...->...", weight, g.pow(2))
        count += len(x)
    net.train(was_training)
    return {n: t / max(count, 1) for n, t in total.items()}


def posterior_variance(
    fisher: Tensor, alpha: float, is_head: bool, forget_rows: Sequence[int] = ()
) -> Tensor:
    """The noise variance of one parameter, as ``get_mean_var`` in Golatkar et al.'s code.

    ``σ² = α · clamp(1 / (F + 1e-8), max=1e3)`` (head: ``max=1e2``), then, for a parameter of
    two or more dimensions, averaged over **dim 1 only** and broadcast back:
    ``var.mean(dim=1, keepdim=True)``. For a linear weight ``[out, in]`` that is the mean over
    the inputs of each output unit; for a conv weight ``[out, in, kh, kw]`` it is the mean over
    input channels, so each (output channel, kernel position) keeps its own variance. The head's
    ``forget_rows`` get ``σ² = 1e-4``; the head and 1-D parameters (biases, norms) then get ×10.
    """
    var = (1.0 / (fisher + 1e-8)).clamp(max=1e2 if is_head else 1e3) * alpha
    if var.ndim > 1:
        var = var.mean(dim=1, keepdim=True).expand_as(fisher).clone()
    if is_head:
        var[list(forget_rows)] = 1e-4
        var = var * 10
    elif var.ndim == 1:
        var = var * 10
    return var


class FisherForgetting(UnlearningMethod):
    """Replace every parameter by a sample of N(μ, σ²) with σ² from the retained data's Fisher
    (:func:`posterior_variance`: the inverse Fisher, averaged over dim 1 as in the authors' code);
    the head's forget rows get μ = 0. The head is the model's own ``get_classifier()``, never
    guessed by ``size(0) == K``.
    """

    name = "fisher"

    def __init__(self, alpha: float = 1e-6, batch_size: int = 32, **kwargs) -> None:
        kwargs.setdefault("epochs", 0)
        super().__init__(**kwargs)
        if self.epochs != 0:
            raise ValueError("fisher is one-shot: epochs must be 0")
        self.alpha, self.batch_size = alpha, batch_size

    def on_fit_start(self, net: nn.Module, request: ForgetRequest, data: TrainingData) -> None:
        # per-sample gradients hold batch_size copies of the parameters: keep batches small
        fisher = fisher_diagonal(net, data.retain(self.batch_size), request.num_classes)
        head = classifier_head(net)
        head_params = {id(head.weight), id(head.bias)}
        forget = list(request.all_forgotten)
        with torch.no_grad():
            for n, p in net.named_parameters():
                if n not in fisher:
                    continue
                is_head = id(p) in head_params
                var = posterior_variance(fisher[n], self.alpha, is_head, forget)
                mu = p.clone()
                if is_head:
                    mu[forget] = 0.0
                p.copy_(mu + var.sqrt() * torch.randn_like(p))
