"""The embedded offline corpus: speech synthesised with espeak-ng, deterministic from a seed.

It needs no download and no data folder, which makes it the default of ``make demo`` and the
backbone of the fast tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from qpae.data.manifest import ManifestDataModule
from qpae.data.synthetic_corpus import build_accent_corpus, build_speaker_corpus


class SyntheticSpeakersDataModule(ManifestDataModule):
    """Synthetic speaker ID: ``n_speakers`` voices (variant × pitch × rate) saying ten digits."""

    name = "synthetic_speakers"

    def __init__(
        self, data_dir: str | Path, n_speakers: int = 12, repetitions: int = 5, corpus_seed: int = 0, **kwargs
    ) -> None:
        self.corpus_args = {"n_speakers": n_speakers, "repetitions": repetitions, "seed": corpus_seed}
        root = Path(data_dir).expanduser() / f"speakers-{n_speakers}x{repetitions}-s{corpus_seed}"
        super().__init__(root / "manifest.csv", data_dir=root, **kwargs)

    def _recordings(self):
        build_speaker_corpus(self.data_dir, **self.corpus_args)
        return super()._recordings()


class SyntheticAccentsDataModule(ManifestDataModule):
    """Synthetic accent ID: espeak language voices reading the Accent Archive paragraph."""

    name = "synthetic_accents"

    def __init__(
        self,
        data_dir: str | Path,
        accents: Sequence[str] | None = None,
        speakers_per_accent: int = 4,
        corpus_seed: int = 0,
        window: bool = True,
        **kwargs,
    ) -> None:
        self.corpus_args = {"speakers_per_accent": speakers_per_accent, "seed": corpus_seed}
        if accents:
            self.corpus_args["accents"] = tuple(accents)
        tag = "-".join(sorted(accents)) if accents else "default"
        root = Path(data_dir).expanduser() / f"accents-{tag}-{speakers_per_accent}-s{corpus_seed}"
        super().__init__(root / "manifest.csv", data_dir=root, window=window, **kwargs)

    def _recordings(self):
        build_accent_corpus(self.data_dir, **self.corpus_args)
        return super()._recordings()
