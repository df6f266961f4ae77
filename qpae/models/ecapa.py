"""ECAPA-TDNN (Desplanques et al. 2020) as a qpae model: SpeechBrain's module, trained here from
scratch, with an additive-angular-margin (AAM) head over its embedding.

The encoder is ``speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN`` (Apache-2.0), unchanged; its
input is qpae's log-mel image [B, 1, mels, frames] read as [B, frames, mels]. The embedding (its
``lin_neurons`` output) is what verification scores. The head is :class:`AngularHead`: an
``nn.Linear`` without bias whose logits are ``scale · cos(x, W_k)``; in training the target
class's cosine gets SpeechBrain's additive angular margin (``cos(θ + m)``,
``speechbrain.nnet.losses.AdditiveAngularMargin``), as SpeechBrain's ECAPA recipes train it.
Because the head *is* an ``nn.Linear`` reached through ``get_classifier()``, every unlearning
method and QPAudioEraser phase acts on its rows unchanged (the cosine makes a row's length
irrelevant; its direction is what a phase moves).

SpeechBrain is imported only when an ECAPA model is built (it takes seconds): ``pip install
speechbrain`` or ``pip install -e '.[speaker]'``.
"""

from __future__ import annotations

import importlib.util
import os

import torch
import torch.nn.functional as F
from timm.models import register_model
from torch import nn

from qpae.models.head import EmbeddingHead


class AngularHead(nn.Linear):
    """Cosine logits ``scale · cos(x, W_k)`` (no bias), with an additive angular margin ``margin``
    on the target class in training (:meth:`with_margin`)."""

    def __init__(self, in_features: int, out_features: int, scale: float = 30.0, margin: float = 0.2) -> None:
        super().__init__(in_features, out_features, bias=False)
        if scale <= 0 or not 0 <= margin < 1:
            raise ValueError(
                f"an AAM head needs scale > 0 and 0 <= margin < 1, got scale={scale}, margin={margin}"
            )
        self.scale, self.margin = float(scale), float(margin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.linear(F.normalize(x, dim=-1), F.normalize(self.weight, dim=-1))

    def with_margin(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training logits: the target class's cosine θ becomes θ + margin (SpeechBrain's AAM)."""
        keep_torch_settings()
        from speechbrain.nnet.losses import AdditiveAngularMargin

        one_hot = F.one_hot(targets, logits.shape[-1]).to(logits.dtype)
        return AdditiveAngularMargin(margin=self.margin, scale=self.scale)(logits / self.scale, one_hot)


def margin_logits(net: nn.Module, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``logits`` as the training loss should see them: with the head's angular margin when it
    has one (an :class:`AngularHead`), else unchanged."""
    head = net.get_classifier() if hasattr(net, "get_classifier") else None
    return head.with_margin(logits, targets) if isinstance(head, AngularHead) else logits


def keep_torch_settings() -> None:
    """Before any SpeechBrain import: its import changes torch's global settings ("quirks": TF32
    matmuls on, the JIT profiler off, cuDNN benchmarking off on ROCm). qpae's other models and its
    exactness checks must not depend on whether an ECAPA was built in the same process."""
    os.environ.setdefault("SB_DISABLE_QUIRKS", "allow_tf32,disable_jit_profiling,disable_cudnn_benchmarking")


def speechbrain_ecapa():
    if importlib.util.find_spec("speechbrain") is None:
        raise RuntimeError(
            "model=ecapa_tdnn uses SpeechBrain's ECAPA-TDNN: `pip install speechbrain` "
            "(or `pip install -e '.[speaker]'`)"
        )
    keep_torch_settings()
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    return ECAPA_TDNN


class ECAPA(EmbeddingHead, nn.Module):
    """ECAPA-TDNN encoder + AAM head, with timm's head API.

    Args:
        num_classes: the head's outputs.
        in_chans: must be 1 (one mel image per clip).
        img_size: (mels, frames) of the features; the encoder reads ``mels`` per frame.
        channels: the TDNN blocks' width C (the last layer is 3C, as in the paper); a multiple of 8
            (Res2Net scale 8). The paper's is 512 or 1024; 64 trains on a CPU.
        embedding: the embedding size (``lin_neurons``).
        scale, margin: the AAM head's (SpeechBrain's recipes: 30 and 0.2).
        drop_rate: dropout before the head.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        img_size: tuple[int, int] | None = None,
        channels: int = 64,
        embedding: int = 128,
        scale: float = 30.0,
        margin: float = 0.2,
        drop_rate: float = 0.0,
        **_: object,
    ) -> None:
        super().__init__()
        if in_chans != 1:
            raise ValueError(
                f"ecapa_tdnn reads one mel spectrogram per clip (in_chans=1), got in_chans={in_chans}"
            )
        if img_size is None:
            raise ValueError(
                "ecapa_tdnn needs img_size=(mels, frames): the encoder's input width is the mel count"
            )
        if channels < 8 or channels % 8:
            raise ValueError(
                f"ecapa_tdnn channels must be a positive multiple of 8 (Res2Net scale 8), got {channels}"
            )
        if embedding < 1:
            raise ValueError(f"ecapa_tdnn embedding must be positive, got {embedding}")
        self.n_mels = int(img_size[0])
        attention = max(8, channels // 4)
        self.encoder = speechbrain_ecapa()(
            self.n_mels,
            lin_neurons=embedding,
            channels=[channels] * 4 + [3 * channels],
            attention_channels=attention,
            se_channels=attention,
        )
        self.num_features = embedding
        self.drop = nn.Dropout(drop_rate)
        self.head = AngularHead(embedding, num_classes, scale=scale, margin=margin)
        self.num_classes = num_classes

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = AngularHead(
            self.num_features, num_classes, scale=self.head.scale, margin=self.head.margin
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, mels, frames] → the speaker embedding [B, embedding]."""
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != self.n_mels:
            raise ValueError(
                f"ecapa_tdnn expects [batch, 1, {self.n_mels}, frames] features, got {list(x.shape)}"
            )
        return self.encoder(x[:, 0].transpose(1, 2)).flatten(1)


@register_model
def ecapa_tdnn(pretrained: bool = False, **kwargs) -> ECAPA:
    """ECAPA-TDNN trained here from scratch: there are no pretrained weights to load."""
    if pretrained:
        raise ValueError("model=ecapa_tdnn is trained here from scratch: set model.pretrained=false")
    kwargs = {
        k: v for k, v in kwargs.items() if k not in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")
    }
    return ECAPA(**kwargs)


__all__ = ["ECAPA", "AngularHead", "margin_logits"]
