"""The GE2E speaker encoder (Wan et al. 2018) as a qpae model: Resemblyzer's pretrained weights,
qpae's own module, a linear head over the 256-d embedding.

The architecture is Resemblyzer's ``VoiceEncoder`` (Apache-2.0): a 3-layer LSTM over 40 mel
bands (25 ms windows, 10 ms hops at 16 kHz), a linear layer, ReLU and L2 normalisation; the
utterance embedding is the last layer's final hidden state through those. The weights ship
inside the ``resemblyzer`` wheel as ``pretrained.pt``; they are read here tensors-only
(``torch.load(weights_only=True)``) without importing the package (which would need webrtcvad
and librosa for its own preprocessing).

Input: the ``ge2e_mel`` front end's [B, 1, 40, frames] power mel spectrogram (not log),
as ``qpae.data.features`` computes it for ``model=ge2e``. The embedding is what verification
scores; ``head`` is the classification head every unlearning method acts on.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from timm.models import register_model
from torch import nn

from qpae.models.head import EmbeddingHead

N_MELS = 40
HIDDEN = 256
EMBEDDING = 256
LAYERS = 3
ENCODER_KEYS = ("lstm.", "linear.")


class WeightsNotFoundError(RuntimeError):
    """The pretrained GE2E weights (inside the resemblyzer wheel) are not installed."""


def resemblyzer_weights() -> Path:
    """Where the installed ``resemblyzer`` package keeps ``pretrained.pt`` (not importing it)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotFoundError(
            "model=ge2e with pretrained=true needs the GE2E weights that ship in the `resemblyzer` wheel "
            "(Apache-2.0, 17 MB): `pip install resemblyzer` (or `pip install -e '.[speaker]'`), or set "
            "model.pretrained=false to train the encoder from scratch"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not path.is_file():
        raise WeightsNotFoundError(
            f"the resemblyzer package at {path.parent} has no pretrained.pt; reinstall it"
        )
    return path


def load_encoder_state(path: Path | None = None) -> dict[str, torch.Tensor]:
    """The encoder's tensors (LSTM and linear layer) from Resemblyzer's checkpoint, tensors only."""
    path = Path(path) if path is not None else resemblyzer_weights()
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("model_state", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no GE2E model_state")
    encoder = {k: v for k, v in state.items() if k.startswith(ENCODER_KEYS)}
    if not encoder:
        raise ValueError(f"{path} holds no GE2E encoder tensors (lstm.*, linear.*)")
    return encoder


class GE2E(EmbeddingHead, nn.Module):
    """GE2E encoder + linear classification head, with timm's head API.

    Args:
        num_classes: the head's outputs.
        in_chans: must be 1 (one mel image per clip).
        freeze_encoder: train the head only (the encoder's weights keep requires_grad=False).
        drop_rate: dropout before the head.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        freeze_encoder: bool = False,
        drop_rate: float = 0.0,
        img_size: tuple[int, int] | None = None,
        **_: object,
    ) -> None:
        super().__init__()
        if in_chans != 1:
            raise ValueError(f"ge2e reads one mel spectrogram per clip (in_chans=1), got in_chans={in_chans}")
        if img_size is not None and int(img_size[0]) != N_MELS:
            raise ValueError(
                f"ge2e reads {N_MELS} mel bands, but the features have {img_size[0]}: use the ge2e front end "
                "(model=ge2e sets dataset.features for it; do not override dataset.features.n_mels)"
            )
        self.lstm = nn.LSTM(N_MELS, HIDDEN, LAYERS, batch_first=True)
        self.linear = nn.Linear(HIDDEN, EMBEDDING)
        self.relu = nn.ReLU()
        self.num_features = EMBEDDING
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(EMBEDDING, num_classes)
        self.num_classes = num_classes
        self.freeze_encoder = freeze_encoder
        self.set_encoder_trainable(not freeze_encoder)

    def set_encoder_trainable(self, trainable: bool) -> None:
        for module in (self.lstm, self.linear):
            for p in module.parameters():
                p.requires_grad_(trainable)

    def embed(self, mels: torch.Tensor) -> torch.Tensor:
        """[B, frames, 40] power mels → L2-normalised [B, 256] embeddings (Resemblyzer's forward)."""
        _, (hidden, _) = self.lstm(mels)
        raw = self.relu(self.linear(hidden[-1]))
        return raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-12)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, 40, frames] → the utterance embedding [B, 256]."""
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != N_MELS:
            raise ValueError(
                f"ge2e expects [batch, 1, {N_MELS}, frames] mel spectrograms, got {list(x.shape)}"
            )
        return self.embed(x[:, 0].transpose(1, 2).contiguous())


@register_model
def ge2e(pretrained: bool = False, **kwargs) -> GE2E:
    """The GE2E encoder; ``pretrained`` loads Resemblyzer's weights into the encoder (the head is new)."""
    kwargs = {
        k: v for k, v in kwargs.items() if k not in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")
    }
    model = GE2E(**kwargs)
    if pretrained:
        missing, unexpected = model.load_state_dict(load_encoder_state(), strict=False)
        if unexpected or any(k.startswith(ENCODER_KEYS) for k in missing):
            raise ValueError(
                f"the GE2E weights do not fit the encoder: missing {missing}, unexpected {unexpected}"
            )
    return model


__all__ = ["GE2E", "WeightsNotFoundError", "load_encoder_state", "resemblyzer_weights"]
