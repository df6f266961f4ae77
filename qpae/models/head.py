"""timm's head API for qpae's own models: one linear ``head`` over ``num_features``."""

from __future__ import annotations

from torch import nn


class LinearHead:
    """``get_classifier`` / ``reset_classifier`` for a module whose output layer is ``self.head``
    (an ``nn.Linear`` over ``self.num_features``), so unlearning code finds it without guessing."""

    head: nn.Linear
    num_features: int
    num_classes: int

    def get_classifier(self) -> nn.Linear:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes)
