"""Seeded, class-stratified train/val/test splits over recordings (never over windows)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    """Indices into a recording list. Windows of one recording always share its split."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]

    def fingerprint(self, ids: Sequence[str]) -> str:
        """sha256 over the recording ids in each part: equal iff the splits are the same."""
        h = hashlib.sha256()
        for name, part in (("train", self.train), ("val", self.val), ("test", self.test)):
            h.update(name.encode())
            for i in sorted(ids[j] for j in part):
                h.update(i.encode() + b"\0")
        return h.hexdigest()


def stratified_split(labels: Sequence[int], val_fraction: float, test_fraction: float, seed: int) -> Split:
    """Split per class: each class contributes ~val/test fractions, at least one train item.

    Every class with ≥ 3 items gets at least one val and one test item, so that each class
    is measured; classes with fewer items keep them all in train.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"bad split fractions val={val_fraction} test={test_fraction}")
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, y in enumerate(labels):
        by_class[int(y)].append(i)
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for y in sorted(by_class):
        idx = np.array(by_class[y])
        rng.shuffle(idx)
        n = len(idx)
        n_test = max(1, round(n * test_fraction)) if n >= 3 and test_fraction > 0 else 0
        n_val = max(1, round(n * val_fraction)) if n >= 3 and val_fraction > 0 else 0
        test += idx[:n_test].tolist()
        val += idx[n_test : n_test + n_val].tolist()
        train += idx[n_test + n_val :].tolist()
    return Split(tuple(sorted(train)), tuple(sorted(val)), tuple(sorted(test)))
