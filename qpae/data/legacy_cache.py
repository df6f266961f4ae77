"""The whole-corpus feature caches of qpae before the feature store: found, refused, removed.

Before the store, each dataset's features were one file ``<cache_dir>/<dataset>-<20 hex>.pt``
holding every clip of the corpus, every speaker included, and nothing ever removed one. Such a
file is a copy of the data that erasure cannot reach, so qpae refuses to run beside one until
``qpae-store … store.action=migrate`` (or any purge) removes it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)

PATTERN = re.compile(r"(?P<dataset>.+)-[0-9a-f]{20}\.pt")


class LegacyCacheError(RuntimeError):
    """Whole-corpus feature caches from before the store are present."""


def find(cache_dir: Path, dataset: str | None = None) -> list[Path]:
    """The old whole-corpus caches in ``cache_dir`` (of one dataset, or of all)."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    out = []
    for path in sorted(cache_dir.iterdir()):
        match = PATTERN.fullmatch(path.name)
        if match and path.is_file() and (dataset is None or match["dataset"] == dataset):
            out.append(path)
    return out


def refuse(cache_dir: Path, dataset: str) -> None:
    """Raise, naming the one command that removes them, if old caches of ``dataset`` exist."""
    old = find(cache_dir, dataset)
    if old:
        size = sum(p.stat().st_size for p in old) / 2**20
        raise LegacyCacheError(
            f"{len(old)} whole-corpus feature cache file(s) from before the feature store are in {cache_dir} "
            f"({size:.0f} MiB, e.g. {old[0].name}): they hold every speaker's features, including any erased "
            f"since. Remove them and build the store with: qpae-store dataset={dataset} store.action=migrate "
            f"(or `make store DATASET={dataset} ACTION=migrate`)"
        )


def remove(cache_dir: Path, dataset: str | None = None) -> list[str]:
    """Delete the old caches (of one dataset, or all); their names."""
    gone = []
    for path in find(cache_dir, dataset):
        path.unlink(missing_ok=True)
        gone.append(path.name)
        log.info("removed the whole-corpus feature cache %s", path)
    return gone


__all__ = ["LegacyCacheError", "find", "refuse", "remove"]
