"""Instant masking: phase 1 alone, applied to a copy of the deployed model when a request arrives.

Negating a class's head row (``W[f] <- -W[f]/sqrt(2)``, ``b[f] <- -b[f]``) makes the model stop
predicting that class at once (FA ≈ 0) but changes nothing else: the features still separate the
person, and flipping the row back restores them. A masked version is therefore labelled
"masked, not erased" everywhere, and the full unlearning run follows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from qpae.checkpoints import ModelFile, build_net, model_bytes
from qpae.models.factory import classifier_head
from qpae.unlearning.phases import destructive_interference


def masked_model(model: ModelFile, classes: Sequence[int]) -> bytes:
    """The bytes of ``model`` with phase 1 applied to ``classes`` (which must not be masked or
    forgotten in it already: negating a row twice restores it). Its metadata lists every masked
    class under ``masked_classes``; ``forgotten_classes`` stays the erasures' record."""
    already = set(model.meta.get("masked_classes", [])) | set(model.meta.get("forgotten_classes", []))
    again = sorted(set(classes) & already)
    if again:
        raise ValueError(
            f"classes {again} are already masked or forgotten in this model: masking twice unmasks"
        )
    net = build_net(model.meta)
    net.load_state_dict(model.state_dict)
    head = classifier_head(net)
    weight, bias = destructive_interference(head.weight, head.bias, list(classes))
    with torch.no_grad():
        head.weight.copy_(weight)
        if bias is not None:
            head.bias.copy_(bias)
    masked = sorted(set(model.meta.get("masked_classes", [])) | set(classes))
    return model_bytes(net, {**model.meta, "masked_classes": masked})
