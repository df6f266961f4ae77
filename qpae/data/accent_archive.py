"""Speech Accent Archive: ``recordings/*.mp3`` and ``speakers_all.csv`` (label = native language)."""

from __future__ import annotations

import csv

from qpae.data.base import AudioDataModule, Recording

# The paper kept the 13 accents with more than two samples.
PAPER_ACCENTS = (
    "arabic",
    "dutch",
    "english",
    "french",
    "german",
    "italian",
    "korean",
    "mandarin",
    "polish",
    "portuguese",
    "russian",
    "spanish",
    "turkish",
)


class AccentArchiveDataModule(AudioDataModule):
    """Accent ID on the Speech Accent Archive (Kaggle's ``speech-accent-archive`` layout).

    Each recording is the same ~20 s paragraph, so recordings are cut into windows; the split
    is over speakers' recordings, never over windows.
    """

    name = "accent_archive"
    layout = (
        "  <data_dir>/recordings/<language><n>.mp3   (e.g. recordings/french3.mp3)\n"
        "  <data_dir>/speakers_all.csv               (columns include filename, native_language, file_missing?)"
    )
    extra = "It is distributed on Kaggle (speech-accent-archive); download it by hand."

    def __init__(self, *args, classes=PAPER_ACCENTS, window: bool = True, **kwargs) -> None:
        super().__init__(*args, classes=classes, window=window, **kwargs)

    def fetch(self) -> None:
        raise self.not_found(self.extra)

    def find_recordings(self) -> list[Recording]:
        table, rec_dir = self.data_dir / "speakers_all.csv", self.data_dir / "recordings"
        if not table.exists() or not rec_dir.is_dir():
            raise self.not_found(self.extra)
        recs = []
        with table.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if str(row.get("file_missing?", "False")).strip().lower() == "true":
                    continue
                path = rec_dir / f"{row['filename'].strip()}.mp3"
                if path.exists():
                    label = row["native_language"].strip().lower()
                    recs.append(Recording(path, label, row["filename"].strip()))
        return recs
