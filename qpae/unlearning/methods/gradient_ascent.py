"""Gradient ascent on forget data together with descent on retained data."""

from __future__ import annotations

from torch import Tensor

from qpae.unlearning.methods.base import UnlearningMethod, split_cross_entropy
from qpae.unlearning.request import ForgetRequest


class GradientAscent(UnlearningMethod):
    """loss = CE(retained) − ``forget_weight`` · CE(forget), per batch."""

    name = "gradient_ascent"
    train_on = "forget+retain"

    def __init__(self, forget_weight: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.forget_weight = forget_weight

    def loss(
        self, logits: Tensor, labels: Tensor, request: ForgetRequest, features: Tensor | None = None
    ) -> Tensor:
        retain, forget = split_cross_entropy(logits, labels, request.all_forgotten)
        return retain - self.forget_weight * forget
