"""timm's head API for qpae's own models: one linear ``head`` over ``num_features``, and the
``forward`` every one of them shares (``forward_head(forward_features(x))``)."""

from __future__ import annotations

import torch
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class EmbeddingHead(LinearHead):
    """For encoders whose ``forward_features`` already returns the embedding (GE2E, ECAPA-TDNN):
    the pre-logits are the embedding after ``self.drop``, the logits ``self.head`` of them."""

    drop: nn.Module

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(x)
        return x if pre_logits else self.head(x)
