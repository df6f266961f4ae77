"""Seeded, class-stratified train/val/test splits, and the rule that chooses their unit.

Three ways to split, chosen by a DataModule's ``split_by``:

- ``recording``: every recording (and all its windows) in one part, stratified by class;
- ``speaker``: every speaker (all their recordings) in one part, stratified by class
  (scikit-learn's ``StratifiedGroupKFold``), for labels that are not the speaker;
- ``window``: each recording's windows cut in time into train, then val, then test.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

SPLIT_BY = ("auto", "recording", "speaker", "window")


@dataclass(frozen=True)
class Split:
    """Indices into a list of split units: recordings (``recording``, ``speaker``) or windows
    (``window``). ``method`` is the ``split_by`` that made it, part of the fingerprint."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]
    method: str = "recording"

    def fingerprint(self, ids: Sequence[str]) -> str:
        """sha256 over the method and the unit ids in each part: equal iff the splits are the same."""
        h = hashlib.sha256(f"split_by={self.method}\0".encode())
        for name, part in (("train", self.train), ("val", self.val), ("test", self.test)):
            h.update(name.encode())
            for i in sorted(ids[j] for j in part):
                h.update(i.encode() + b"\0")
        return h.hexdigest()


def resolve_split_by(split_by: str, labels: Sequence[str], speakers: Sequence[str]) -> str:
    """The split unit that ``split_by`` means for these recordings.

    ``auto`` is ``recording`` when the label is the speaker (each class holds one speaker's
    recordings, whatever the label is called) or when some recording names no speaker, and
    ``speaker`` otherwise (digit, word, accent, gender labels): then no speaker is in two parts.
    """
    if split_by not in SPLIT_BY:
        raise ValueError(f"split_by must be one of {SPLIT_BY}, got {split_by!r}")
    if split_by == "speaker" and not all(speakers):
        missing = sum(not s for s in speakers)
        raise ValueError(f"split_by=speaker needs a speaker for every recording; {missing} have none")
    if split_by != "auto":
        return split_by
    if not all(speakers):
        return "recording"
    speakers_of: dict[str, set[str]] = defaultdict(set)
    for label, speaker in zip(labels, speakers, strict=True):
        speakers_of[label].add(speaker)
    return "recording" if all(len(s) == 1 for s in speakers_of.values()) else "speaker"


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"bad split fractions val={val_fraction} test={test_fraction}")


def _part_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(n_val, n_test) of n ≥ 3 items: at least one each (when asked for) and one left for train."""
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    while n_test + n_val >= n:  # rounding up both can eat the training share
        if n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    return n_val, n_test


def stratified_split(labels: Sequence[int], val_fraction: float, test_fraction: float, seed: int) -> Split:
    """Split recordings per class: each class contributes ~val/test fractions, at least one train item.

    Every class with ≥ 3 items gets at least one val and one test item, so that each class
    is measured; classes with fewer items keep them all in train.
    """
    _check_fractions(val_fraction, test_fraction)
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, y in enumerate(labels):
        by_class[int(y)].append(i)
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for y in sorted(by_class):
        idx = np.array(by_class[y])
        rng.shuffle(idx)
        n = len(idx)
        n_val, n_test = _part_sizes(n, val_fraction, test_fraction) if n >= 3 else (0, 0)
        test += idx[:n_test].tolist()
        val += idx[n_test : n_test + n_val].tolist()
        train += idx[n_test + n_val :].tolist()
    return Split(tuple(sorted(train)), tuple(sorted(val)), tuple(sorted(test)), "recording")


def speaker_split(
    labels: Sequence[int],
    speakers: Sequence[Hashable],
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> Split:
    """Split recordings so that no speaker is in two parts, stratified by class.

    ``StratifiedGroupKFold`` cuts the speakers into k folds of similar class make-up; the first
    ~``test_fraction`` of the folds are the test part, the next ~``val_fraction`` the val part.
    k is 1 / the smaller fraction (10 for 0.1), but at most the fewest speakers any class has, so
    that each fold can hold every class: with few speakers per class, val and test are larger
    than asked (4 speakers per class give 2 train / 1 val / 1 test speakers).

    Raises:
        ValueError: a class has fewer than 3 speakers (train, val and test need one each).
    """
    _check_fractions(val_fraction, test_fraction)
    speakers_of: dict[int, set] = defaultdict(set)
    for y, s in zip(labels, speakers, strict=True):
        speakers_of[int(y)].add(s)
    few = {y: len(s) for y, s in sorted(speakers_of.items()) if len(s) < 3}
    if few:
        raise ValueError(
            f"speaker-disjoint train/val/test needs at least 3 speakers per class; {len(few)} of "
            f"{len(speakers_of)} classes have fewer (class index: speakers = {few}). Drop those classes "
            "(min_per_class counts speakers under split_by=speaker) or set split_by=recording "
            "(a speaker's recordings may then be in train and test)"
        )
    fractions = [f for f in (val_fraction, test_fraction) if f > 0]
    if not fractions:
        return Split(tuple(range(len(labels))), (), (), "speaker")
    fewest = min(len(s) for s in speakers_of.values())
    k = max(3, min(round(1 / min(fractions)), fewest))
    n_val, n_test = _part_sizes(k, val_fraction, test_fraction)
    folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(
        np.zeros(len(labels)), np.asarray(labels), np.asarray(speakers)
    )
    parts = [test_idx.tolist() for _, test_idx in folds]
    test = sum(parts[:n_test], [])
    val = sum(parts[n_test : n_test + n_val], [])
    train = sum(parts[n_test + n_val :], [])
    return Split(tuple(sorted(train)), tuple(sorted(val)), tuple(sorted(test)), "speaker")


def time_split(recording_of_window: Sequence[int], val_fraction: float, test_fraction: float) -> Split:
    """Split each recording's windows in time: the first ~train share → train, then val, then test.

    ``recording_of_window[w]`` is the recording of window ``w``; a recording's windows are listed
    in time order. A recording with fewer than 3 windows cannot give each part one, so all its
    windows go to train. Deterministic: there is nothing to seed.

    The same recording (speaker, session, microphone) is in train and test, with adjacent windows
    on either side of a cut: test accuracy measures recognising held-out moments of known
    recordings, not new recordings, and is higher than a recording-disjoint split's.
    """
    _check_fractions(val_fraction, test_fraction)
    windows_of: dict[int, list[int]] = defaultdict(list)
    for w, r in enumerate(recording_of_window):
        windows_of[int(r)].append(w)
    train, val, test = [], [], []
    for ws in windows_of.values():
        n = len(ws)
        n_val, n_test = _part_sizes(n, val_fraction, test_fraction) if n >= 3 else (0, 0)
        cut = n - n_val - n_test
        train += ws[:cut]
        val += ws[cut : n - n_test]
        test += ws[n - n_test :]
    return Split(tuple(sorted(train)), tuple(sorted(val)), tuple(sorted(test)), "window")
