"""Audio decoding: any file soundfile reads, to fixed-length mono float32 at one sample rate.

torchaudio.load needs TorchCodec + FFmpeg, which these machines lack; soundfile (libsndfile)
reads wav, flac and mp3 on its own.
"""

from __future__ import annotations

import logging
import os
import stat
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.transforms as T

log = logging.getLogger(__name__)

# Integer PCM decodes into [-1, 1], and resampling or a float file's inter-sample peaks overshoot
# by a few dB at most; a peak beyond 2 (+6 dB) means samples stored at another scale (e.g. int16
# values in a float file). Features are per clip, so such a clip is still usable: it is warned of.
LOUD_PEAK = 2.0


class BadAudioError(ValueError):
    """A file that cannot serve as a training example (corrupt, empty or silent)."""


def load_mono(path: str | Path, sample_rate: int, min_duration_s: float = 0.0) -> np.ndarray:
    """Decode ``path``, downmix to mono and resample to ``sample_rate``.

    Only regular files are opened: a FIFO or a device named by a manifest would block the read
    forever. A clip whose peak is beyond ±``LOUD_PEAK`` is used but logged with its peak.

    Raises:
        BadAudioError: the path is not a regular file, or the file cannot be decoded, has no
            samples, is shorter than ``min_duration_s`` seconds, or is digitally silent.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        raise BadAudioError(f"{path}: cannot decode ({err})") from err
    if not stat.S_ISREG(mode):
        raise BadAudioError(f"{path}: not a regular file (a FIFO, device or folder is never opened)")
    try:
        wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, EOFError) as err:
        raise BadAudioError(f"{path}: cannot decode ({err})") from err
    if wave.shape[0] == 0:
        raise BadAudioError(f"{path}: zero-length audio")
    duration = wave.shape[0] / sr
    if duration < min_duration_s:
        # a clip of a few milliseconds would become an example that is almost all padding
        raise BadAudioError(
            f"{path}: {1000 * duration:.1f} ms of audio, shorter than min_duration_s={min_duration_s} s"
        )
    mono = wave.mean(axis=1)
    # Digital silence carries no speaker information and yields -inf log-mels.
    if not np.isfinite(mono).all() or float(np.abs(mono).max()) < 1e-6:
        raise BadAudioError(f"{path}: silent or non-finite audio")
    peak = float(np.abs(wave).max())
    if peak > LOUD_PEAK:
        log.warning("%s: peak |sample| = %.3g, far outside [-1, 1]; used as is", path, peak)
    if sr != sample_rate:
        with torch.no_grad():
            mono = _resampler(sr, sample_rate)(torch.from_numpy(mono)).numpy()
    return mono


@lru_cache(maxsize=16)
def _resampler(orig: int, new: int) -> T.Resample:
    # building the sinc kernel costs more than applying it to a short clip: build it once per pair
    return T.Resample(orig, new)


def fit_length(wave: np.ndarray, num_samples: int) -> np.ndarray:
    """Centre-crop or zero-pad (symmetrically) ``wave`` to exactly ``num_samples``."""
    n = wave.shape[0]
    if n >= num_samples:
        start = (n - num_samples) // 2
        return wave[start : start + num_samples]
    left = (num_samples - n) // 2
    return np.pad(wave, (left, num_samples - n - left))


def windows(wave: np.ndarray, num_samples: int, max_windows: int | None = None) -> list[np.ndarray]:
    """Cut a long utterance into consecutive non-overlapping windows of ``num_samples``.

    A clip shorter than one window gives one padded window; a trailing remainder shorter than
    half a window is dropped (it would be mostly padding).
    """
    if wave.shape[0] <= num_samples:
        return [fit_length(wave, num_samples)]
    starts = range(0, wave.shape[0] - num_samples // 2, num_samples)
    out = [fit_length(wave[s : s + num_samples], num_samples) for s in starts]
    return out[:max_windows] if max_windows else out
