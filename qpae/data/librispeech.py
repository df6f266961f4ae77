"""LibriSpeech: ``<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` (16 kHz)."""

from __future__ import annotations

from qpae.data.base import AudioDataModule, Recording


class LibriSpeechDataModule(AudioDataModule):
    """LibriSpeech speaker ID. Utterances are long, so they are cut into fixed windows
    (``window=True`` by default); the split is made over utterances, so windows of one
    utterance never straddle train and test."""

    name = "librispeech"
    layout = (
        "  <data_dir>/LibriSpeech/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac\n"
        "  (e.g. LibriSpeech/test-other/3005/163389/3005-163389-0005.flac; choose the split with "
        "dataset.subset)"
    )
    download_url = None  # set per subset in __init__

    def __init__(self, *args, subset: str = "test-other", window: bool = True, **kwargs) -> None:
        super().__init__(*args, window=window, **kwargs)
        self.subset = subset
        self.download_url = f"https://www.openslr.org/resources/12/{subset}.tar.gz"

    def find_recordings(self) -> list[Recording]:
        root = self.data_dir / "LibriSpeech" / self.subset
        if not root.is_dir():
            root = self.data_dir / self.subset
        if not root.is_dir():
            raise self.not_found()
        return [Recording(path, path.parts[-3], path.parts[-3]) for path in sorted(root.glob("*/*/*.flac"))]
