"""Bring your own data: a CSV with ``path,label`` (and optionally ``speaker``)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from qpae.data.base import AudioDataModule, Recording
from qpae.data.duplicates import find_duplicates
from qpae.data.labels import normalise_labels

log = logging.getLogger(__name__)


class ManifestDataModule(AudioDataModule):
    """Recordings listed in a CSV; relative paths are relative to the CSV's folder.

    The CSV is read as UTF-8 (a byte-order mark is allowed). Labels and speakers are normalised
    (:func:`qpae.data.labels.normalise_label`); a manifest that spells one label or speaker in two
    ways (whitespace, Unicode form, case) is refused. Rows naming a file already listed, by path
    or by identical bytes, are dropped (and counted in the log); if they give it another label or
    speaker, the manifest is refused, naming both rows.
    """

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
        # utf-8-sig: a byte-order mark (Excel writes one) would otherwise prefix the first column's name
        with self.manifest.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = {"path", "label"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(
                    f"{self.manifest}: missing columns {sorted(missing)} (need path,label[,speaker]); "
                    f"found {reader.fieldnames}"
                )
            rows = list(reader)
        where = [f"{self.manifest.name}:{line}" for line in range(2, len(rows) + 2)]
        for row, at in zip(rows, where, strict=True):
            if not (row["label"] or "").strip():
                raise ValueError(f"{self.manifest}:{at.rsplit(':', 1)[1]}: empty label")
        labels = normalise_labels([row["label"] for row in rows], where, "label")
        speakers = normalise_labels([row.get("speaker") or "" for row in rows], where, "speaker")
        paths = []
        for row in rows:
            path = Path(row["path"])
            paths.append(path if path.is_absolute() else self.manifest.parent / path)

        duplicates = find_duplicates(paths)
        for i, (first, why) in duplicates.items():
            if (labels[i], speakers[i]) != (labels[first], speakers[first]):
                raise ValueError(
                    f"{self.manifest}: rows {where[first]} and {where[i]} list the same file ({why}: "
                    f"{paths[first]}, {paths[i]}) with different labels or speakers: "
                    f"({labels[first]!r}, {speakers[first]!r}) vs ({labels[i]!r}, {speakers[i]!r})"
                )
        if duplicates:
            by_path = sum(why == "same path" for _, why in duplicates.values())
            example = next(iter(duplicates))
            log.warning(
                "%s: dropped %d duplicate rows (%d listing a listed path, %d a listed file's bytes); "
                "e.g. %s repeats %s",
                self.manifest,
                len(duplicates),
                by_path,
                len(duplicates) - by_path,
                where[example],
                where[duplicates[example][0]],
            )
        return [Recording(paths[i], labels[i], speakers[i]) for i in range(len(rows)) if i not in duplicates]
