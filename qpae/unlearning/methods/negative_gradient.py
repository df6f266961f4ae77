"""Negative gradient: ascent on the forget data only."""

from __future__ import annotations

from torch import Tensor

from qpae.unlearning.methods.base import UnlearningMethod, split_cross_entropy
from qpae.unlearning.request import ForgetRequest


class NegativeGradient(UnlearningMethod):
    """loss = −CE(forget). Unbounded: few epochs and a small learning rate, or it destroys
    the model (which the retained accuracy then shows)."""

    name = "negative_gradient"
    train_on = "forget"

    def __init__(self, epochs: int = 1, lr: float = 1e-5, **kwargs) -> None:
        super().__init__(epochs=epochs, lr=lr, **kwargs)

    def loss(
        self, logits: Tensor, labels: Tensor, request: ForgetRequest, features: Tensor | None = None
    ) -> Tensor:
        _, forget = split_cross_entropy(logits, labels, request.all_forgotten)
        return -forget
