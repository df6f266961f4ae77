"""Fine-tune: keep training the original model on retained data only (catastrophic forgetting)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from qpae.unlearning.methods.base import UnlearningMethod
from qpae.unlearning.request import ForgetRequest


class Finetune(UnlearningMethod):
    """Cross-entropy on retained training samples; the forget classes are simply never seen."""

    name = "finetune"
    train_on = "retain"

    def loss(
        self, logits: Tensor, labels: Tensor, request: ForgetRequest, features: Tensor | None = None
    ) -> Tensor:
        return F.cross_entropy(logits, labels)
