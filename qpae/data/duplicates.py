"""Find the rows of a file list that name a file already listed: by path, or by identical bytes.

A file listed twice (or copied under another name) can land in train and test at once, which
makes test accuracy a training accuracy. Content is hashed only where it is cheap to need it:
for files whose size equals another file's.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path


def find_duplicates(paths: Sequence[Path]) -> dict[int, tuple[int, str]]:
    """Map each duplicate row to ``(first row listing the same file, "same path" | "same content")``.

    Rows are compared by resolved path (symlinks and ``..`` resolved), then the remaining
    regular files by size and, within a size, by sha256 of their bytes. Files that cannot be
    stat-ed and non-regular files (FIFOs, devices: opening them could block) are never read here;
    decoding reports them.
    """
    duplicates: dict[int, tuple[int, str]] = {}
    first_of_path: dict[Path, int] = {}
    for i, path in enumerate(paths):
        first = first_of_path.setdefault(Path(os.path.realpath(path)), i)
        if first != i:
            duplicates[i] = (first, "same path")

    by_size: dict[int, list[int]] = defaultdict(list)
    for i in sorted(first_of_path.values()):
        try:
            st = os.stat(paths[i])
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            by_size[st.st_size].append(i)
    for rows in by_size.values():
        if len(rows) < 2:
            continue
        first_of_digest: dict[str, int] = {}
        for i in rows:
            with open(paths[i], "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
            first = first_of_digest.setdefault(digest, i)
            if first != i:
                duplicates[i] = (first, "same content")
    # a row that duplicates a path whose first row is itself a content duplicate points at the original
    return {i: (duplicates.get(j, (j, why))[0], why) for i, (j, why) in sorted(duplicates.items())}
