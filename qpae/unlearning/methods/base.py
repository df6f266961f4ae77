"""The one interface every unlearning method implements; :class:`UnlearnModule` only calls it."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from qpae.unlearning.request import ForgetRequest

TrainOn = Literal["forget+retain", "retain", "forget"]


class UnlearningMethod:
    """Hooks around a short fine-tuning run of the original model.

    A method says what data it trains on (``train_on``), for how long (``epochs``, 0 for a
    one-shot edit), and overrides any of the three hooks. Its optimiser settings are ``lr`` and
    ``weight_decay``; ``retain_fraction`` is the share of retained training samples drawn afresh
    each epoch (1.0 = all of them, as the paper fine-tunes on the full training set).
    """

    name: ClassVar[str] = "method"
    train_on: ClassVar[TrainOn] = "forget+retain"

    def __init__(self, epochs: int = 5, lr: float = 1e-4, weight_decay: float = 0.0,
                 retain_fraction: float = 1.0) -> None:
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        if not 0.0 < retain_fraction <= 1.0:
            raise ValueError(f"retain_fraction must be in (0, 1], got {retain_fraction}")
        self.epochs, self.lr, self.weight_decay = epochs, lr, weight_decay
        self.retain_fraction = retain_fraction

    def on_fit_start(self, net: nn.Module, request: ForgetRequest) -> None:
        """Edit the model before training (in place)."""

    def loss(self, logits: Tensor, labels: Tensor, request: ForgetRequest) -> Tensor:
        """The training loss of one batch."""
        raise NotImplementedError

    def on_fit_end(self, net: nn.Module, request: ForgetRequest) -> None:
        """Edit the model after training (in place)."""

    def optimizer(self, params) -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

    def config(self) -> dict:
        """Plain settings for metrics.json and the receipt."""
        return {"name": self.name, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}
