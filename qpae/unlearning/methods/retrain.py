"""Retrain: the gold standard — a fresh network trained on the retained data only."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from qpae.unlearning.methods.base import UnlearningMethod
from qpae.unlearning.request import ForgetRequest


class Retrain(UnlearningMethod):
    """Same recipe as pretraining (AdamW, cosine schedule), on retained training samples only,
    from a freshly initialised network of the same architecture. Every other method is judged
    by its distance to this model."""

    name = "retrain"
    train_on = "retain"
    from_scratch = True

    def __init__(self, epochs: int = 10, lr: float = 1e-3, weight_decay: float = 1e-4, **kwargs) -> None:
        super().__init__(epochs=epochs, lr=lr, weight_decay=weight_decay, **kwargs)

    def loss(
        self, logits: Tensor, labels: Tensor, request: ForgetRequest, features: Tensor | None = None
    ) -> Tensor:
        return F.cross_entropy(logits, labels)

    def configure_optimizers(self, params):
        optimizer = super().configure_optimizers(params)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.epochs))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
