"""Log-mel spectrogram features (torchaudio transforms), the input of every model here."""

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

    @property
    def num_samples(self) -> int:
        return int(round(self.sample_rate * self.duration_s))

    def as_dict(self) -> dict:
        return asdict(self)


class LogMel(torch.nn.Module):
    """Waveforms [N, samples] → log-mel images [N, 1, n_mels, frames] (dB, or resized).

    Each clip's features depend on that clip alone: the 80 dB floor is set per clip, never per
    batch, so a clip gets the same features whichever clips share its batch.
    """

    def __init__(self, config: FeatureConfig) -> None:
        super().__init__()
        self.config = config
        self.mel = T.MelSpectrogram(
            sample_rate=config.sample_rate,
            n_fft=config.n_fft,
            win_length=int(round(config.sample_rate * config.win_ms / 1000)),
            hop_length=int(round(config.sample_rate * config.hop_ms / 1000)),
            n_mels=config.n_mels,
        )
        self.to_db = T.AmplitudeToDB(stype="power", top_db=80.0)

    @torch.no_grad()
    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        # [N, 1, mels, frames]: torchaudio sets the top_db floor per item of a 4-D input, but over the
        # whole tensor of a 3-D one, where one loud clip would floor every other clip of the batch.
        spec = self.to_db(self.mel(waves).unsqueeze(1))
        if self.config.resize is not None:
            spec = F.interpolate(spec, size=tuple(self.config.resize), mode="bilinear", align_corners=False)
        return spec
