"""Download-or-explain: fetch a public archive when a network is there, else say where data goes."""

from __future__ import annotations

import logging
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is not in ``data_dir`` (and could not be downloaded)."""


def missing_dataset(
    name: str, data_dir: Path, layout: str, config_key: str, extra: str = ""
) -> DatasetNotFoundError:
    """An error that says exactly where to put what."""
    return DatasetNotFoundError(
        f"{name} not found in {data_dir}.\n"
        f"Expected layout:\n{layout}\n"
        f"Put the data there, or point qpae at it: DATA_DIR=/path/holding/{data_dir.name} with make, "
        f"paths.data=/path/holding/{data_dir.name} or {config_key}=/path/to/it on the command line"
        + (f"\n{extra}" if extra else "")
    )


def download_and_extract(url: str, dest: Path, timeout_s: float = 20.0) -> None:
    """Fetch ``url`` (zip or tar.*) and unpack it into ``dest``. Raises OSError when offline."""
    dest.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s into %s", url, dest)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        archive = Path(tmp) / url.rsplit("/", 1)[-1]
        with urllib.request.urlopen(url, timeout=timeout_s) as resp, open(archive, "wb") as out:
            shutil.copyfileobj(resp, out)
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(dest)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(dest, filter="data")
