"""On-disk cache of decoded features, keyed by everything that determines them.

A second run with the same files and feature settings loads one tensor file instead of decoding
audio again; changing any setting, or any file's size or mtime, gives a new key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import torch

from qpae.publish import remove_stale_leftovers, temp_prefix

log = logging.getLogger(__name__)

# 2: the dB floor is per clip (version 1 floored each chunk of 512 clips at its loudest clip)
FORMAT_VERSION = 2


def cache_key(settings: dict, files: list[Path]) -> str:
    """sha256 of the settings and each file's path, size and mtime."""
    h = hashlib.sha256(json.dumps({"v": FORMAT_VERSION, **settings}, sort_keys=True).encode())
    for f in files:
        try:
            st = f.stat()
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:  # a listed file that is missing: decoding will count it as bad
            size, mtime = -1, -1
        h.update(f"{f}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()


def load(path: Path) -> dict | None:
    """The cached entry at ``path``, or None when there is none (or it is unreadable)."""
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: rebuild rather than fail
        log.warning("ignoring unreadable feature cache %s (%s)", path, err)
        return None


def save(path: Path, entry: dict) -> None:
    """Write atomically (temp file + rename) so that a killed run leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_leftovers(path.parent)  # a killed run's half-written features
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=".tmp")
    os.close(fd)
    try:
        torch.save(entry, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
