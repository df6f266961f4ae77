"""One factory for every backbone: timm's ``create_model`` with audio-friendly checks."""

from __future__ import annotations

import os

import timm
from torch import Tensor, nn

import qpae.models.small_cnn  # noqa: F401  (registers qpae_small_cnn with timm)

SUPPORTED = ("resnet18", "vit_tiny_patch16_224", "qpae_small_cnn")


def create_model(
    name: str,
    num_classes: int,
    in_chans: int = 1,
    img_size: tuple[int, int] | None = None,
    pretrained: bool = False,
    **kwargs,
) -> nn.Module:
    """Build ``name`` for ``in_chans``-channel spectrograms and ``num_classes`` outputs.

    Any timm model name works; ``SUPPORTED`` are the ones qpae tests. ViTs get ``img_size``
    (the feature image size) and pad odd sizes to whole patches.

    Raises:
        ValueError: unknown model name (the message lists the supported ones).
        RuntimeError: ``pretrained=True`` while the hub is unreachable (offline).
    """
    if not timm.is_model(name):
        raise ValueError(f"unknown model {name!r}; supported: {', '.join(SUPPORTED)} (or any timm model)")
    if name.startswith("vit") and img_size is not None:
        # pad the spectrogram to whole 16-pixel patches rather than drop its last frames
        padded = tuple(-(-int(s) // 16) * 16 for s in img_size)
        kwargs = {"img_size": padded, "dynamic_img_size": True, "dynamic_img_pad": True, **kwargs}
    try:
        model = timm.create_model(
            name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs
        )
    except OSError as err:  # huggingface_hub's "not in the local cache" errors are OSErrors
        if pretrained:
            offline = " (HF_HUB_OFFLINE=1 is set)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
            raise RuntimeError(
                f"could not load ImageNet weights for {name}{offline}: {err}. Put them in the "
                "Hugging Face cache (HF_HOME) or set model.pretrained=false."
            ) from err
        raise
    if not hasattr(model, "get_classifier"):
        raise ValueError(f"{name} exposes no get_classifier(); qpae needs to find the head")
    return model


def classifier_head(model: nn.Module) -> nn.Linear:
    """The model's output layer, through its own API (never guessed from tensor shapes)."""
    head = model.get_classifier()
    if not isinstance(head, nn.Linear):
        raise TypeError(f"{type(model).__name__}.get_classifier() is {type(head).__name__}, not nn.Linear")
    return head


def features_and_logits(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Penultimate (pre-logit) features and logits of one forward pass, through timm's
    ``forward_features`` / ``forward_head(pre_logits=True)`` / ``get_classifier()``."""
    features = model.forward_head(model.forward_features(x), pre_logits=True)
    return features, classifier_head(model)(features)
