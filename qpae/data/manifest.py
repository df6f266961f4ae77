"""Bring your own data: a CSV with ``path,label`` (and optionally ``speaker``)."""

from __future__ import annotations

import csv
from pathlib import Path

from qpae.data.base import AudioDataModule, Recording


class ManifestDataModule(AudioDataModule):
    """Recordings listed in a CSV; relative paths are relative to the CSV's folder."""

    name = "manifest"
    layout = "  <manifest>.csv with a header row: path,label[,speaker]"
    config_key = "dataset.manifest"

    def __init__(self, manifest: str | Path, *args, data_dir: str | Path | None = None, **kwargs) -> None:
        self.manifest = Path(manifest).expanduser()
        super().__init__(data_dir or self.manifest.parent, *args, **kwargs)

    def fetch(self) -> None:
        raise self.not_found()

    def _recordings(self) -> list[Recording]:
        if not self.manifest.is_file():
            raise self.not_found(f"No manifest file at {self.manifest}.")
        return super()._recordings()

    def find_recordings(self) -> list[Recording]:
        with self.manifest.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"path", "label"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(
                    f"{self.manifest}: missing columns {sorted(missing)} (need path,label[,speaker])"
                )
            rows = list(reader)
        recs = []
        for line, row in enumerate(rows, start=2):
            path = Path(row["path"])
            path = path if path.is_absolute() else self.manifest.parent / path
            if not row["label"]:
                raise ValueError(f"{self.manifest}:{line}: empty label")
            recs.append(Recording(path, row["label"], row.get("speaker") or ""))
        return recs
