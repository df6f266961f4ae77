"""Spectrogram features (torchaudio transforms): the log-mel image every CNN/ViT here reads, or the
GE2E speaker encoder's own power mel frames (``front_end: ge2e_mel``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
import torchaudio.transforms as T


@dataclass(frozen=True)
class FeatureConfig:
    """How a clip becomes a 1×n_mels×frames image. Part of the feature-cache key."""

    sample_rate: int = 16_000
    duration_s: float = 1.0
    n_mels: int = 64
    hop_ms: float = 10.0
    win_ms: float = 25.0
    n_fft: int = 512
    # The paper resized spectrograms to 224×224 for ImageNet backbones; None keeps the native size.
    resize: tuple[int, int] | None = None
    # log_mel: dB log-mel images, normalised with the training split's mean/std (every CNN/ViT);
    # ge2e_mel: the GE2E encoder's input as Resemblyzer computes it (power mel, Slaney scale and
    # norm, 40 bands, 25 ms / 10 ms, centred frames), neither logged nor normalised.
    front_end: str = "log_mel"

    def __post_init__(self) -> None:
        if self.front_end not in FRONT_ENDS:
            raise ValueError(f"unknown feature front_end {self.front_end!r}; valid: {', '.join(FRONT_ENDS)}")
        if self.front_end == "ge2e_mel" and self.resize is not None:
            raise ValueError("the ge2e_mel front end feeds an LSTM over frames: resize must be null")

    @property
    def normalised(self) -> bool:
        """Whether the data module normalises these features with the training split's statistics."""
        return self.front_end == "log_mel"

    @property
    def num_samples(self) -> int:
        return int(round(self.sample_rate * self.duration_s))

    def as_dict(self) -> dict:
        """The settings (part of the feature store's key); the default front end is left out, so
        stores and model files from before front ends existed keep their keys."""
        out = asdict(self)
        if out["front_end"] == "log_mel":
            del out["front_end"]
        return out


FRONT_ENDS = ("log_mel", "ge2e_mel")
F16_MAX = 65504.0


def mel_spectrogram(config: FeatureConfig, **options) -> T.MelSpectrogram:
    """torchaudio's mel spectrogram at ``config``'s rate, window, hop and bands (plus ``options``)."""
    return T.MelSpectrogram(
        sample_rate=config.sample_rate,
        n_fft=config.n_fft,
        win_length=int(round(config.sample_rate * config.win_ms / 1000)),
        hop_length=int(round(config.sample_rate * config.hop_ms / 1000)),
        n_mels=config.n_mels,
        **options,
    )


class LogMel(torch.nn.Module):
    """Waveforms [N, samples] → log-mel images [N, 1, n_mels, frames] (dB, or resized).

    Each clip's features depend on that clip alone: the 80 dB floor is set per clip, never per
    batch, so a clip gets the same features whichever clips share its batch.
    """

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__()
        self.config = config
        self.mel = mel_spectrogram(config)
        self.to_db = T.AmplitudeToDB(stype="power", top_db=80.0)

    @torch.no_grad()
    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        # [N, 1, mels, frames]: torchaudio sets the top_db floor per item of a 4-D input, but over the
        # whole tensor of a 3-D one, where one loud clip would floor every other clip of the batch.
        spec = self.to_db(self.mel(waves).unsqueeze(1))
        if self.config.resize is not None:
            spec = F.interpolate(spec, size=tuple(self.config.resize), mode="bilinear", align_corners=False)
        return spec


class GE2EMel(torch.nn.Module):
    """Waveforms [N, samples] → the GE2E encoder's power mel frames [N, 1, 40, frames].

    With ``model=ge2e``'s settings, the same transform as Resemblyzer's ``wav_to_mel_spectrogram``
    (librosa's melspectrogram with n_fft = 400, hop 160, 40 Slaney-normalised bands, centred, constant padding, power 2), so that
    its pretrained weights see the input they were trained on. Per clip, nothing across a batch.
    """

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__()
        self.config = config
        self.mel = mel_spectrogram(
            config, power=2.0, center=True, pad_mode="constant", norm="slaney", mel_scale="slaney"
        )

    @torch.no_grad()
    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        # the store keeps float16: a band's power above its largest finite value is clipped there,
        # never stored as inf (a full-scale sine reaches ~1e3)
        return self.mel(waves).clamp_(max=F16_MAX).unsqueeze(1)


def front_end(config: FeatureConfig) -> torch.nn.Module:
    """The transform ``config.front_end`` names."""
    return GE2EMel(config) if config.front_end == "ge2e_mel" else LogMel(config)
