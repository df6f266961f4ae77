"""One factory for every backbone: timm's ``create_model`` with audio-friendly checks."""

from __future__ import annotations

import os

import timm
from torch import Tensor, nn

import qpae.models.ecapa  # noqa: F401  (registers ecapa_tdnn with timm; SpeechBrain loads on use)
import qpae.models.ge2e  # noqa: F401  (registers ge2e with timm)
import qpae.models.small_cnn  # noqa: F401  (registers qpae_small_cnn with timm)

SUPPORTED = ("resnet18", "vit_tiny_patch16_224", "qpae_small_cnn", "ge2e", "ecapa_tdnn")

# The settings qpae's own model configs (conf/model/*.yaml) may carry, per model. A model file
# records its settings as data; rebuilding from a file accepts these and nothing else, so a file
# cannot point timm at a checkpoint_path, a hub repo or another architecture.
FACTORY_TARGET = "qpae.models.factory.create_model"
MODEL_SETTINGS: dict[str, frozenset[str]] = {
    "resnet18": frozenset({"pretrained", "drop_rate"}),
    "vit_tiny_patch16_224": frozenset({"pretrained", "drop_rate"}),
    "qpae_small_cnn": frozenset({"pretrained", "width", "drop_rate"}),
    "ge2e": frozenset({"pretrained", "freeze_encoder", "drop_rate"}),
    "ecapa_tdnn": frozenset({"pretrained", "channels", "embedding", "scale", "margin", "drop_rate"}),
}


def create_model(
    name: str,
    num_classes: int,
    in_chans: int = 1,
    img_size: tuple[int, int] | None = None,
    pretrained: bool = False,
    **kwargs,
) -> nn.Module:
    """Build ``name`` for ``in_chans``-channel spectrograms and ``num_classes`` outputs.

    Only ``SUPPORTED`` models: every model qpae writes must be one it can rebuild from a file
    (:func:`model_from_settings`). ViTs get ``img_size`` (the feature image size) and pad odd
    sizes to whole patches.

    Raises:
        ValueError: unknown model name (the message lists the supported ones).
        RuntimeError: ``pretrained=True`` while the hub is unreachable (offline).
    """
    if name not in SUPPORTED or not timm.is_model(name):
        raise ValueError(f"unknown model {name!r}; supported: {', '.join(SUPPORTED)}")
    if name.startswith("vit") and img_size is not None:
        # pad the spectrogram to whole 16-pixel patches rather than drop its last frames
        padded = tuple(-(-int(s) // 16) * 16 for s in img_size)
        kwargs = {"img_size": padded, "dynamic_img_size": True, "dynamic_img_pad": True, **kwargs}
    if name in ("ge2e", "ecapa_tdnn"):  # they read the mel count (and check it)
        kwargs = {"img_size": img_size, **kwargs}
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


def model_from_settings(
    settings: dict,
    num_classes: int,
    in_chans: int,
    img_size: tuple[int, int],
    load_pretrained: bool = False,
) -> nn.Module:
    """Build a network from qpae's own model names and keys only (``conf/model/<name>.yaml``).

    Pretraining builds through here, and so does every reader of a model file: a file's
    ``model`` entry is data, and anything but a known model and its known settings is refused
    rather than handed to timm. ImageNet weights are fetched only when ``load_pretrained`` is
    set (pretraining); a model file brings its own weights.

    Raises:
        ValueError: an unknown model, an unexpected ``_target_`` or an unknown setting.
    """
    if not isinstance(settings, dict):
        raise ValueError(f"model settings must be a mapping, got {type(settings).__name__}")
    target = settings.get("_target_", FACTORY_TARGET)
    if target != FACTORY_TARGET:
        raise ValueError(f"refusing model file: it asks for {target!r}, not qpae's model factory")
    name = settings.get("name")
    if name not in MODEL_SETTINGS:
        raise ValueError(f"refusing model file: model {name!r} is not one of qpae's ({', '.join(SUPPORTED)})")
    extra = sorted(set(settings) - {"_target_", "name"} - MODEL_SETTINGS[name])
    if extra:
        raise ValueError(f"refusing model file: {name} settings {extra} are not qpae model settings")
    for key in ("width", "channels", "embedding"):
        if key in settings and (isinstance(settings[key], bool) or not isinstance(settings[key], int)):
            raise ValueError(f"refusing model file: {key} must be an integer")
    if "freeze_encoder" in settings and not isinstance(settings["freeze_encoder"], bool):
        raise ValueError("refusing model file: freeze_encoder must be true or false")
    for key in ("drop_rate", "scale", "margin"):
        if key in settings and (
            isinstance(settings[key], bool) or not isinstance(settings[key], int | float)
        ):
            raise ValueError(f"refusing model file: {key} must be a number")
    kwargs = {k: v for k, v in settings.items() if k not in ("_target_", "name", "pretrained")}
    pretrained = bool(settings.get("pretrained", False)) and load_pretrained
    return create_model(
        name, num_classes=num_classes, in_chans=in_chans, img_size=img_size, pretrained=pretrained, **kwargs
    )


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
