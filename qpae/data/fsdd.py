"""Free Spoken Digit Dataset: ``recordings/<digit>_<speaker>_<rep>.wav`` (8 kHz)."""

from __future__ import annotations

from qpae.data.base import AudioDataModule, Recording


class FSDDDataModule(AudioDataModule):
    """FSDD, labelled by ``speaker`` (default) or ``digit``."""

    name = "fsdd"
    layout = "  <data_dir>/recordings/<digit>_<speaker>_<rep>.wav   (e.g. recordings/7_theo_12.wav)"
    download_url = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.zip"

    def __init__(self, *args, label: str = "speaker", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if label not in ("speaker", "digit"):
            raise ValueError(f"fsdd label must be 'speaker' or 'digit', got {label!r}")
        self.label = label

    def find_recordings(self) -> list[Recording]:
        root = self.data_dir / "recordings"
        if not root.is_dir():
            # the GitHub archive unpacks into free-spoken-digit-dataset-<tag>/recordings
            found = sorted(self.data_dir.glob("*/recordings"))
            if not found:
                raise self.not_found()
            root = found[0]
        recs = []
        for path in sorted(root.glob("*.wav")):
            parts = path.stem.split("_")
            if len(parts) != 3:
                continue
            digit, speaker, _ = parts
            recs.append(Recording(path, speaker if self.label == "speaker" else digit, speaker))
        return recs
