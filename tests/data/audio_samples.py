"""Small audio files and manifests written by the data tests (never copied from shared data)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf


def voice(seconds: float, sr: int, f0: float, seed: int) -> np.ndarray:
    """A harmonic tone with a little noise: speech-like enough for log-mel features."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    harmonics = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    return (0.2 * harmonics + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def write_csv(
    path: Path, rows: Iterable[tuple], header=("path", "label", "speaker"), encoding="utf-8"
) -> Path:
    """A manifest with ``header`` and ``rows``; returns its path."""
    with open(path, "w", newline="", encoding=encoding) as fh:
        csv.writer(fh).writerows([header, *rows])
    return path


def write_speakers(root: Path, labels: dict[str, list[str]], seconds: float = 0.7) -> list[tuple]:
    """One clip per (label, speaker) pair: ``labels`` maps each label to its speakers; returns rows."""
    rows = []
    for c, (label, speakers) in enumerate(sorted(labels.items())):
        for s, speaker in enumerate(speakers):
            path = root / f"{label}_{speaker}.wav"
            sf.write(path, voice(seconds, 8_000, 100 + 40 * c + 3 * s, 100 * c + s), 8_000)
            rows.append((path.name, label, speaker))
    return rows
