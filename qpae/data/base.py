"""The shared base of every dataset: class selection, the feature store, splits, forget/retain views.

A dataset subclass only says where its recordings are and what their labels are
(:meth:`AudioDataModule.find_recordings`); everything else lives here so that every dataset
selects, stores, splits and builds forget/retain views the same way. Features live in the
speaker-sharded feature store (:mod:`qpae.data.store`); classes are chosen from the recording list
(and the store's index of unusable recordings) before any audio is decoded, and only the chosen
classes' recordings are decoded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader

from qpae.data import legacy_cache
from qpae.data.audio import BadAudioError, fit_length, load_mono, windows
from qpae.data.download import DatasetNotFoundError, download_and_extract, missing_dataset
from qpae.data.duplicates import RealPaths
from qpae.data.features import FeatureConfig, front_end
from qpae.data.forget_retain import ForgetRetainSampler
from qpae.data.placement import MiB, Placement, ResidentWindows, choose_placement, feature_bytes, fingerprint
from qpae.data.splits import SPLIT_BY, Split, resolve_split_by, speaker_split, stratified_split, time_split
from qpae.data.store import Decoded, FeatureStore, Source, store_path
from qpae.data.windows_dataset import WindowDataset, as_batch

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
UNITS = {"recording": "recordings", "speaker": "speakers", "window": "windows"}


@dataclass(frozen=True)
class Recording:
    """One audio file and its class. ``speaker`` is kept for speaker-disjoint analyses."""

    path: Path
    label: str
    speaker: str = ""


class DataQualityError(RuntimeError):
    """Too many recordings could not be used."""


class AudioDataModule(L.LightningDataModule):
    """Base LightningDataModule for audio classification on log-mel features.

    Subclasses set ``name``, ``layout`` (the expected directory layout, for error messages) and
    optionally ``download_url``, and implement :meth:`find_recordings`.

    Args:
        data_dir: where the dataset's standard layout lives.
        cache_dir: where the feature store lives (default ``<data_dir>/.qpae_cache``):
            ``<cache_dir>/store/<dataset>-<settings key>/``.
        features: a :class:`FeatureConfig` or its fields as a dict.
        window: cut long recordings into ``features.duration_s`` windows (else centre-crop/pad).
        max_windows: at most this many windows per recording.
        classes: keep only these class names (in this order of preference); None keeps all.
        max_classes: keep the N classes with the most split units (see ``split_by``).
        min_per_class: drop classes with fewer split units: recordings, speakers or windows, as
            ``split_by`` splits (they cannot be split and measured).
        split_by: what the train/val/test split keeps together (:mod:`qpae.data.splits`):
            ``recording``; ``speaker`` (no speaker in two parts, stratified by label); ``window``
            (each recording's windows cut in time: needs ``window=True``; the same recording is
            then in train and test); ``auto`` = ``speaker`` when the label is not the speaker
            (digit, word, accent, gender) and the recordings name their speakers, else ``recording``.
        split_seed: seeds the split only; the model file records the split (its fingerprint).
        order_seed: seeds the training batch order and the unlearning retained subsample, so that
            runs with several order seeds share one split (and one test set).
        min_duration_s: recordings shorter than this are unusable (counted like undecodable ones):
            a clip of a few milliseconds would be an example made almost all of padding.
        max_bad_fraction: fail when more than this share of recordings cannot be decoded.
        download: try the public download when the data is missing.
        decode_threads: recordings decoded at once when the store lacks them (default: every core).
    """

    name: ClassVar[str] = "audio"
    layout: ClassVar[str] = ""
    config_key: ClassVar[str] = "dataset.data_dir"
    download_url: ClassVar[str | None] = None

    def __init__(
        self,
        data_dir: str | Path,
        cache_dir: str | Path | None = None,
        features: FeatureConfig | dict | None = None,
        window: bool = False,
        max_windows: int | None = None,
        classes: Sequence[str] | None = None,
        max_classes: int | None = None,
        min_per_class: int = 3,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_by: str = "auto",
        split_seed: int = 0,
        order_seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        min_duration_s: float = 0.1,
        max_bad_fraction: float = 0.05,
        download: bool = False,
        decode_threads: int | None = None,
        device_cache_mb: float = 4096,
    ) -> None:
        super().__init__()
        if device_cache_mb < 0:
            raise ValueError(
                f"device_cache_mb must be >= 0 (0 keeps features off the device), got {device_cache_mb}"
            )
        if split_by not in SPLIT_BY:
            raise ValueError(f"split_by must be one of {SPLIT_BY}, got {split_by!r}")
        if split_by == "window" and not window:
            raise ValueError("split_by=window splits each recording's windows in time: it needs window=true")
        self.data_dir = Path(data_dir).expanduser()
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else self.data_dir / ".qpae_cache"
        if isinstance(features, FeatureConfig):
            self.features = features
        else:
            feats = dict(features or {})
            if feats.get("resize") is not None:
                feats["resize"] = tuple(feats["resize"])
            self.features = FeatureConfig(**feats)
        self.window = window
        self.max_windows = max_windows
        self.classes = list(classes) if classes else None
        self.max_classes = max_classes
        self.min_per_class = min_per_class
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_by = split_by
        self.split_seed = split_seed
        self.order_seed = order_seed
        self.min_duration_s = min_duration_s
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.max_bad_fraction = max_bad_fraction
        self.download = download
        self.decode_threads = decode_threads or os.cpu_count() or 1
        self.device_cache_mb = device_cache_mb
        self.device = torch.device("cpu")  # where training runs: place_on() says
        self._resident: dict[str, ResidentWindows] = {}
        self._told: set[str] = set()
        self._ready = False

    # --- what a subclass provides -------------------------------------------------------
    def find_recordings(self) -> list[Recording]:
        """Every usable recording in ``data_dir`` with its label; raise if the layout is absent."""
        raise NotImplementedError

    def fetch(self) -> None:
        """Make the data present in ``data_dir``: download, or (offline) raise saying where it goes."""
        if self.download and self.download_url:
            try:
                download_and_extract(self.download_url, self.data_dir)
                return
            except OSError as err:
                raise self.not_found(f"Download from {self.download_url} failed: {err}") from err
        raise self.not_found(
            f"It can be downloaded from {self.download_url} (set dataset.download=true)."
            if self.download_url
            else ""
        )

    def not_found(self, extra: str = "") -> DatasetNotFoundError:
        return missing_dataset(self.name, self.data_dir, self.layout, self.config_key, extra)

    # --- Lightning hooks ------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Runs on one process per node: fetch if needed, decode what the store lacks."""
        self._stored()

    def setup(self, stage: str | None = None) -> None:
        """Select classes, split (as ``split_by`` says), and normalise on the training windows.

        A split is made once per split setting and kept in the store: while the recordings of
        its classes are the same (or fewer only by purged speakers), every later setup reads it
        back, so a purge leaves every other recording in its part and the models trained on the
        split usable."""
        if self._ready:
            return
        stored = self._stored()
        store = stored["store"]
        self.recordings = stored["recordings"]  # recording_ids index this list
        self.speakers = [r.speaker for r in self.recordings]
        self.class_names = stored["class_names"]
        self.split_by_used = stored["split"]["method"] if stored["split"] else self.split_by_used
        index = {c: k for k, c in enumerate(self.class_names)}
        rec_labels = [index[r.label] for r in self.recordings]
        rows = stored["rows"]
        shard_names = sorted({row["shard"] for row in rows})
        shard_of = {name: k for k, name in enumerate(shard_names)}
        counts = np.array([row["windows"] for row in rows], dtype=np.int64)
        owner = np.repeat(np.arange(len(rows)), counts)
        within = np.arange(len(owner)) - (np.cumsum(counts) - counts)[owner]
        shard = np.array([shard_of[row["shard"]] for row in rows], dtype=np.int64)[owner]
        row = np.array([row["offset"] for row in rows], dtype=np.int64)[owner] + within
        self.recording_ids = torch.from_numpy(owner)
        if stored["split"] is None:
            self.split, unit_ids = self._split(self.recordings, rec_labels, self.recording_ids)
            self.split_fingerprint = self.split.fingerprint(unit_ids)
        else:
            self.split = self._kept_split(stored["split"], stored["ids"], counts)
            self.split_fingerprint = stored["split"]["fingerprint"]
        n_units = len(owner) if self.split.method == "window" else len(self.recordings)
        unit_part = torch.full((n_units,), -1, dtype=torch.long)
        for p, name in enumerate(SPLITS):
            unit_part[list(getattr(self.split, name))] = p
        window_part = unit_part if self.split.method == "window" else unit_part[self.recording_ids]
        self.targets = torch.tensor(rec_labels, dtype=torch.long)[self.recording_ids]
        self.indices = {name: torch.nonzero(window_part == p).flatten() for p, name in enumerate(SPLITS)}
        with_data = {r.label for r in self.recordings}
        self.purged_classes = [c for c in self.class_names if c in stored["purged"] and c not in with_data]
        self._check_parts()
        store.verify(shard_names, content=False)  # sizes now; each shard's sha256 when first read
        self.all_windows = WindowDataset(store, shard_names, shard, row, self.targets, stored["shape"])
        if stored["split"] is None:
            # One scalar mean/std from the training windows only (no test statistics leak in),
            # kept with the split: a purge changes neither the parts nor the normalisation.
            # (a front end whose model reads its features as they are, GE2E's, is not normalised)
            if self.features.normalised:
                self.mean, self.std = _mean_std(self.all_windows, self.indices["train"].numpy())
            else:
                self.mean, self.std = 0.0, 1.0
            self._keep_split(store, stored["ids"], unit_ids, stored["sources"])
        else:
            self.mean, self.std = stored["split"]["mean"], stored["split"]["std"]
        self.all_windows.mean, self.all_windows.std = self.mean, self.std
        self._ready = True
        log.info(
            "%s: %d classes, %d recordings, split_by=%s, windows train/val/test = %d/%d/%d%s",
            self.name,
            self.num_classes,
            len(self.recordings),
            self.split.method,
            *(len(self.indices[s]) for s in SPLITS),
            f"; purged from the store: {self.purged_classes}" if self.purged_classes else "",
        )

    # --- public views ---------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.all_windows.shape)

    @property
    def label_is_speaker(self) -> bool:
        """Whether each class is one speaker (speaker ID), so that a class name names a person."""
        return bool(self.recordings) and all(r.speaker and r.label == r.speaker for r in self.recordings)

    def require_data(self, classes: Sequence[int], purpose: str) -> None:
        """Refuse, saying why and what to do, when ``purpose`` needs clips of purged classes."""
        gone = [self.class_names[c] for c in classes if self.class_names[c] in self.purged_classes]
        if gone:
            from qpae.data.store import PurgedError

            record = self.store().purged()
            when = "; ".join(
                f"{g}: {record[g]['purged_at']} ({record[g]['reason']})" for g in gone if g in record
            )
            raise PurgedError(
                f"{purpose} needs the clips of {gone}, but they were purged from the feature store {self.store().root} "
                f"({when}). Point dataset.cache_dir at an evaluation copy of the store kept before the purge "
                f"(qpae-store dataset={self.name} store.action=copy store.to=DIR, run before unlearning, or "
                "unlearn with purge=false and purge later with qpae-store … store.action=purge)."
            )

    def dataset(
        self, split: str = "train", classes: Sequence[int] | None = None, exclude: Sequence[int] | None = None
    ) -> WindowDataset:
        """Windows of one split, optionally only of ``classes`` or without ``exclude``."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {SPLITS}")
        idx = self.indices[split]
        y = self.targets[idx]
        mask = torch.ones_like(y, dtype=torch.bool)
        if classes is not None:
            mask &= torch.isin(y, torch.as_tensor(list(classes), dtype=torch.long))
        if exclude is not None:
            mask &= ~torch.isin(y, torch.as_tensor(list(exclude), dtype=torch.long))
        return self.all_windows.subset(idx[mask].numpy())

    def forget_set(self, forget_classes: Sequence[int], split: str = "train") -> WindowDataset:
        """The forget classes' windows; from the training split unless asked otherwise."""
        return self.dataset(split, classes=forget_classes)

    def retain_set(self, forget_classes: Sequence[int], split: str = "train") -> WindowDataset:
        """Every other class's windows; from the training split unless asked otherwise."""
        return self.dataset(split, exclude=forget_classes)

    def place_on(self, device: torch.device | str) -> None:
        """Where the model trains (a trainer's ``strategy.root_device``): on an accelerator, the
        loaders then serve each split from the device itself when its features fit in
        ``device_cache_mb``, else from pinned host memory (see :mod:`qpae.data.placement`)."""
        device = torch.device(device)
        if device != self.device:
            self.device = device
            self.drop_device_copies()

    def drop_device_copies(self) -> None:
        """Overwrite and free the features held on the device: after a run (and a purge) they must
        not outlive the store's shards, not even in the allocator's cached blocks."""
        for copy in self._resident.values():
            copy.wipe()
        self._resident.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def placed(self, dataset: WindowDataset) -> tuple[WindowDataset | ResidentWindows, Placement]:
        """``dataset`` as this module's device wants it read, and how."""
        placement = choose_placement(feature_bytes(dataset), self.device, self.device_cache_mb)
        if placement.kind != "resident":
            if placement.reason and placement.reason not in self._told:
                log.info("%s: %s", self.name, placement.reason)
                self._told.add(placement.reason)
            return dataset, placement
        key = fingerprint(dataset)
        if key not in self._resident:
            held = sum(feature_bytes(r) for r in self._resident.values())
            if held + feature_bytes(dataset) > self.device_cache_mb * MiB:  # the budget is for all splits
                # the splits already held stay (their loaders may still be in use): this one is pinned
                pinned = Placement(
                    "pinned",
                    self.device,
                    f"dataset.device_cache_mb={self.device_cache_mb:g} is taken by {held / MiB:.0f} MiB of other "
                    f"splits: {feature_bytes(dataset) / MiB:.0f} MiB more come from pinned host memory",
                )
                log.info("%s: %s", self.name, pinned.reason)
                return dataset, pinned
            self._resident[key] = ResidentWindows(dataset, self.device)
            log.info("%s: %s", self.name, placement.reason)
        return self._resident[key], placement

    def _data_loader(self, dataset: WindowDataset, **kwargs) -> DataLoader:
        data, placement = self.placed(dataset)
        workers = (
            0 if placement.kind == "resident" else self.num_workers
        )  # device tensors stay in this process
        return DataLoader(
            data,
            collate_fn=as_batch,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=placement.pin_memory,
            **kwargs,
        )

    def loader(self, dataset: WindowDataset, train: bool = False) -> DataLoader:
        """Shuffled, seeded batches for training; in-order batches for evaluation.

        Under DDP, evaluation splits the data without repeating samples: Lightning's default
        DistributedSampler pads with duplicates, which would make DDP metrics differ from
        single-process ones.
        """
        sampler = None
        if not train and torch.distributed.is_available() and torch.distributed.is_initialized():
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        return self._data_loader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            sampler=sampler,
            drop_last=False,
            generator=torch.Generator().manual_seed(self.order_seed) if train else None,
        )

    def unlearning_loader(
        self,
        forgotten: Sequence[int],
        train_on: str = "forget+retain",
        retain_fraction: float = 1.0,
        retain_count: int | None = None,
    ) -> DataLoader:
        """Training-split batches for unlearning: the forgotten classes' samples and/or the
        retained ones (``train_on``), never a test or validation sample. ``retain_count`` draws
        that many retained samples per epoch instead of a ``retain_fraction``."""
        if train_on not in ("forget+retain", "forget", "retain"):
            raise ValueError(f"train_on must be forget+retain, forget or retain; got {train_on!r}")
        data = self.dataset("train")
        is_forget = torch.isin(data.targets, torch.as_tensor(list(forgotten), dtype=torch.long))
        forget = torch.nonzero(is_forget).flatten() if train_on != "retain" else torch.empty(0)
        retain = torch.nonzero(~is_forget).flatten() if train_on != "forget" else torch.empty(0)
        sampler = ForgetRetainSampler(
            forget, retain, retain_fraction, seed=self.order_seed, retain_count=retain_count
        )
        return self._data_loader(data, batch_size=self.batch_size, sampler=sampler)

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.dataset("train"), train=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.dataset("val"))

    def test_dataloader(self) -> DataLoader:
        return self.loader(self.dataset("test"))

    def describe(self) -> dict:
        """Plain facts about the data, stored in checkpoints and receipts."""
        return {
            "dataset": self.name,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "split_by": self.split.method,
            "split_fingerprint": self.split_fingerprint,
            "input_shape": list(self.input_shape),
            "features": self.features.as_dict(),
        }

    # --- internals ------------------------------------------------------------------------
    def _recordings(self) -> list[Recording]:
        if not hasattr(self, "_recording_list"):
            if not self.data_dir.exists() or not any(self.data_dir.iterdir()):
                self.fetch()
            recs = self.find_recordings()
            if not recs:
                raise self.not_found("The folder exists but holds no recordings in that layout.")
            self._recording_list = sorted(recs, key=lambda r: str(r.path))
        return self._recording_list

    def _unit_counts(self, kept: list[Recording], windows: list[int] | None = None) -> Counter:
        """Split units per class: recordings, distinct speakers or windows, as ``split_by`` splits."""
        if self.split_by_used == "speaker":
            return Counter(label for label, _ in {(r.label, r.speaker) for r in kept})
        if self.split_by_used == "window":
            counts: Counter = Counter()
            for r, n in zip(kept, windows or [], strict=True):
                counts[r.label] += n
            return counts
        return Counter(r.label for r in kept)

    def _select_classes(self, counts: Counter) -> list[str]:
        unit = UNITS[self.split_by_used]
        if self.classes is not None:
            unknown = [c for c in self.classes if c not in counts]
            if unknown:
                raise ValueError(
                    f"{self.name}: classes {unknown} have no recordings; found: {sorted(counts)}"
                )
            names = list(self.classes)
        else:
            names = sorted(counts)
        dropped = [c for c in names if counts[c] < self.min_per_class]
        if dropped:
            log.warning(
                "%s: dropping %d classes with < %d %s (split_by=%s): %s",
                self.name,
                len(dropped),
                self.min_per_class,
                unit,
                self.split_by_used,
                dropped[:10],
            )
        considered = len(names)
        names = [c for c in names if counts[c] >= self.min_per_class]
        if self.max_classes is not None:
            # the N classes with most split units (ties broken by name), as the paper did
            names = sorted(sorted(names), key=lambda c: -counts[c])[: self.max_classes]
        names = sorted(names)
        if len(names) < 2:
            most = max(counts.values(), default=0)
            hint = ""
            if self.split_by_used != "window" and most < self.min_per_class:
                hint = (
                    " To split each recording in time instead (e.g. one recording per class), set "
                    "split_by=window with window=true: windows of one recording are then in train and test."
                )
            raise ValueError(
                f"{self.name}: need at least 2 classes, found {len(names)} ({names}): {len(dropped)} of "
                f"{considered} classes have fewer than min_per_class={self.min_per_class} {unit} "
                f"(split_by={self.split_by_used}; the most any class has is {most}), and a class needs "
                f"3 to put one in each of train, val and test.{hint}"
            )
        return names

    def _split(
        self, recordings: list[Recording], labels: list[int], recording_of_window: torch.Tensor
    ) -> tuple[Split, list[str]]:
        """The split and the ids of its units (recording paths, or ``path#k`` for window k)."""
        val, test = self.val_fraction, self.test_fraction
        paths = [str(r.path) for r in recordings]
        if self.split_by_used == "window":
            owners = recording_of_window.tolist()
            seen: Counter = Counter()
            ids = []
            for r in owners:  # a recording's windows are in time order
                ids.append(f"{paths[r]}#{seen[r]}")
                seen[r] += 1
            return time_split(owners, val, test), ids
        if self.split_by_used == "speaker":
            speakers = [r.speaker for r in recordings]
            return speaker_split(labels, speakers, val, test, self.split_seed), paths
        return stratified_split(labels, val, test, self.split_seed), paths

    def _check_parts(self) -> None:
        """A model is never trained without a validation and a test set; say which option to change."""
        sizes = "/".join(str(len(self.indices[s])) for s in SPLITS)
        empty = [s for s in ("val", "test") if len(self.indices[s]) == 0]
        if empty:
            unit = UNITS[self.split.method]
            raise ValueError(
                f"{self.name}: the {' and '.join(empty)} split is empty (windows train/val/test = {sizes}, "
                f"split_by={self.split.method}): a class needs at least 3 {unit} to give train, val and "
                f"test one each. Set min_per_class >= 3 to drop smaller classes, split_by=window (with "
                "window=true) to split each recording in time, or val_fraction/test_fraction > 0."
            )
        counts = torch.bincount(self.targets[self.indices["test"]], minlength=self.num_classes)
        untested = [self.class_names[c] for c in torch.nonzero(counts == 0).flatten().tolist()]
        if untested:
            log.warning("%s: %d classes have no test windows: %s", self.name, len(untested), untested[:10])

    def _settings(self) -> dict:
        return {
            "features": self.features.as_dict(),
            "window": self.window,
            "max_windows": self.max_windows,
            "min_duration_s": self.min_duration_s,
        }

    def store(self) -> FeatureStore:
        """This dataset's feature store under these feature settings (opened once)."""
        if getattr(self, "_store", None) is None:
            legacy_cache.refuse(self.cache_dir, self.name)
            # one store per data folder: recording ids are paths within it
            settings = {**self._settings(), "data_dir": self.store_folder}
            self._store = FeatureStore(store_path(self.cache_dir, self.name, settings), self.name, settings)
        return self._store

    @property
    def store_folder(self) -> str:
        """The data folder the store's recording ids are relative to."""
        return str(self.data_dir.resolve())

    def sources(self, recordings: list[Recording]) -> list[Source]:
        """The store's view of recordings: an id (the path within the data folder) and a shard
        group (the speaker, or the label where recordings name no speaker)."""
        out, real = [], RealPaths()
        root = str(self.data_dir.resolve())
        prefix = root if root.endswith(os.sep) else root + os.sep
        for r in recordings:
            path = real(r.path)
            rid = path[len(prefix) :] if path.startswith(prefix) else path
            out.append(Source(rid, r.path, r.speaker or r.label, r.label))
        return out

    def _keep_split(
        self, store: FeatureStore, ids: list[str], unit_ids: list[str], sources: list[tuple[str, str]]
    ) -> None:
        part_of = {}
        for p, name in enumerate(SPLITS):
            part_of.update(dict.fromkeys(getattr(self.split, name), p))
        owners = self.recording_ids.tolist() if self.split.method == "window" else range(len(ids))
        units = [(unit_ids[u], ids[r], part_of.get(u, -1)) for u, r in enumerate(owners)]
        store.save_split(
            self._split_key(),
            self.split_fingerprint,
            self.split.method,
            self.class_names,
            units,
            self.mean,
            self.std,
            sources,
        )

    def _kept_split(self, saved: dict, ids: list[str], windows: np.ndarray) -> Split:
        """A kept split as indices into this setup's recordings (or windows)."""
        position = {rid: k for k, rid in enumerate(ids)}
        first = np.cumsum(windows) - windows
        parts: dict[int, list[int]] = {0: [], 1: [], 2: []}
        for unit, rid, part in saved["units"]:
            if rid not in position or part < 0:
                continue  # a purged speaker's unit (or one no part holds)
            k = position[rid]
            parts[part].append(
                int(first[k]) + int(unit.rsplit("#", 1)[1]) if saved["method"] == "window" else k
            )
        return Split(*(tuple(sorted(parts[p])) for p in range(3)), saved["method"])

    def _split_key(self) -> str:
        """What decides the split besides the recordings: the split settings and class choice."""
        settings = {
            "split_by": self.split_by,
            "split_seed": self.split_seed,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "classes": self.classes,
            "max_classes": self.max_classes,
            "min_per_class": self.min_per_class,
            # what the labels are: FSDD by speaker or by digit, a manifest's own labels
            "labels": getattr(self, "label", None),
            "manifest": str(getattr(self, "manifest", "")),
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]

    def _stored(self) -> dict:
        """The recordings, classes and (if one is kept) split of this data module, with the store
        holding every chosen recording: the kept split when the recordings of its classes are
        unchanged but for purged speakers, else classes chosen afresh (:meth:`_choose`)."""
        if getattr(self, "_stored_entry", None) is not None:
            return self._stored_entry
        recordings = self._recordings()
        sources = self.sources(recordings)
        store = self.store()
        purged = set(store.purged())
        entry = self._from_kept_split(store, recordings, sources, purged)
        if entry is None:
            chosen, names, usable = self._choose(store, recordings, sources)
            by_id = {r["recording_id"]: r for r in store.recordings(None)}
            entry = {
                "chosen": chosen,
                "class_names": names,
                "split": None,
                "by_id": by_id,
                # what the classes were chosen from: a kept split stands while this is unchanged
                "sources": [(sources[i].recording_id, sources[i].speaker) for i in usable],
            }
        chosen, by_id = entry.pop("chosen"), entry.pop("by_id")
        self._stored_entry = {
            **entry,
            "store": store,
            "recordings": [recordings[i] for i in chosen],
            "ids": [sources[i].recording_id for i in chosen],
            "rows": [by_id[sources[i].recording_id] for i in chosen],
            "shape": self._shape(),
            "purged": purged,
        }
        return self._stored_entry

    def _from_kept_split(self, store, recordings, sources, purged) -> dict | None:
        """The kept split of these settings, if the recordings it was made from are all still here
        (but for purged speakers) and no new recording of its classes has come."""
        saved = store.load_split(self._split_key())
        if saved is None:
            return None
        by_id = {r["recording_id"]: r for r in store.recordings(None)}
        kept_ids = {rid for _, rid, _ in saved["units"]}
        present = {
            s.recording_id
            for s in sources
            if s.speaker not in purged and by_id.get(s.recording_id, {}).get("status") != "bad"
        }
        if present != saved["sources"]:  # every class's recordings: a new class may be chosen
            log.info(
                "%s: the recordings differ from those the kept split was made from (%d new, %d gone): "
                "splitting again",
                self.name,
                len(present - saved["sources"]),
                len(saved["sources"] - present),
            )
            return None
        chosen = [i for i, s in enumerate(sources) if s.recording_id in kept_ids]
        names = set(saved["class_names"])
        if any(recordings[i].label not in names for i in chosen):
            log.info("%s: a recording of the kept split has a new label: splitting again", self.name)
            return None
        self._sync(store, sources, [sources[i].recording_id for i in chosen])
        by_id = {r["recording_id"]: r for r in store.recordings(None)}
        if any(by_id[sources[i].recording_id]["status"] != "ok" for i in chosen):
            return None  # a recording changed on disk and no longer decodes
        self.split_by_used = saved["method"]
        considered = [
            s
            for s, r in zip(sources, recordings, strict=True)
            if r.label in names and s.speaker not in purged
        ]
        bad = [
            by_id[s.recording_id]["reason"]
            for s in considered
            if by_id.get(s.recording_id, {}).get("status") == "bad"
        ]
        self._report_bad(bad, len(considered))
        return {
            "chosen": chosen,
            "class_names": saved["class_names"],
            "split": saved,
            "by_id": by_id,
            "sources": [],
        }

    def _choose(self, store, recordings, sources) -> tuple[list[int], list[str], list[int]]:
        """Choose the classes from the recording list and the store's index of unusable
        recordings, make the store hold the chosen classes' recordings (decoding only what it
        lacks), and choose again if newly found unusable recordings changed the counts."""
        by_id = {r["recording_id"]: r for r in store.recordings(None)}
        usable = [i for i, s in enumerate(sources) if by_id.get(s.recording_id, {}).get("status") != "bad"]
        self.split_by_used = resolve_split_by(
            self.split_by, [r.label for r in recordings], [r.speaker for r in recordings]
        )
        while True:
            if self.split_by_used == "window":  # a class's windows are known once decoded
                self._sync(store, sources, [sources[i].recording_id for i in usable])
                by_id = {r["recording_id"]: r for r in store.recordings(None)}
                usable = [i for i in usable if by_id[sources[i].recording_id]["status"] == "ok"]
                kept = [recordings[i] for i in usable]
                names = self._select_classes(
                    self._unit_counts(kept, [by_id[sources[i].recording_id]["windows"] for i in usable])
                )
            else:
                names = self._select_classes(self._unit_counts([recordings[i] for i in usable]))
            wanted_names = set(names)
            chosen = [i for i in usable if recordings[i].label in wanted_names]
            self._sync(store, sources, [sources[i].recording_id for i in chosen])
            by_id = {r["recording_id"]: r for r in store.recordings(None)}
            newly_bad = {i for i in chosen if by_id[sources[i].recording_id]["status"] != "ok"}
            if not newly_bad:
                break
            usable = [i for i in usable if i not in newly_bad]
        considered = [i for i, r in enumerate(recordings) if r.label in wanted_names]
        stored = set(chosen)
        self._report_bad(
            [by_id[sources[i].recording_id]["reason"] for i in considered if i not in stored], len(considered)
        )
        return chosen, names, usable

    def _sync(self, store: FeatureStore, sources: list[Source], wanted: list[str]) -> None:
        report = store.sync(sources, wanted, self._decode_one, self.decode_threads)
        if report.added or report.removed:
            log.info(
                "%s: feature store %s: %d recordings decoded (%d unusable) in %.1f s, %d dropped",
                self.name,
                store.root,
                report.added,
                report.bad,
                report.decode_s,
                report.removed,
            )
        else:
            log.info("%s: feature store %s holds every recording needed", self.name, store.root)

    def _decode_one(self, source: Source) -> Decoded:
        """One recording's windows of features: depend on that recording alone."""
        cfg = self.features
        try:
            wave = load_mono(source.path, cfg.sample_rate, self.min_duration_s)
        except BadAudioError as err:
            log.warning("skipping unusable recording: %s", err)
            return Decoded(None, str(err))
        clips = (
            windows(wave, cfg.num_samples, self.max_windows)
            if self.window
            else [fit_length(wave, cfg.num_samples)]
        )
        with torch.no_grad():
            x = self._logmel()(torch.from_numpy(np.stack(clips)))
        return Decoded(x.numpy())

    def _logmel(self) -> torch.nn.Module:
        if getattr(self, "_logmel_module", None) is None:
            self._logmel_module = front_end(self.features)
        return self._logmel_module

    def _shape(self) -> tuple[int, ...]:
        return tuple(self._logmel()(torch.zeros(1, self.features.num_samples)).shape[1:])

    def _report_bad(self, bad: list[str], total: int) -> None:
        if not bad:
            return
        share = len(bad) / total
        log.warning("%s: skipped %d of %d recordings (%.1f%%)", self.name, len(bad), total, 100 * share)
        if share > self.max_bad_fraction:
            raise DataQualityError(
                f"{self.name}: {len(bad)} of {total} recordings unusable ({100 * share:.1f}% > "
                f"max_bad_fraction {100 * self.max_bad_fraction:.1f}%); first: {bad[:3]}"
            )


def _mean_std(data: WindowDataset, positions: np.ndarray, chunk_bytes: int = 16 << 20) -> tuple[float, float]:
    """One scalar mean and (unbiased) std over ``positions``' windows, read ``chunk_bytes`` of
    float32 features at a time (a fixed number of windows would cost 16x more at 224x224)."""
    chunk = max(1, chunk_bytes // (4 * int(np.prod(data.shape))))
    total, total_sq, n = 0.0, 0.0, 0
    for start in range(0, len(positions), chunk):
        x = data.raw(positions[start : start + chunk])
        total += float(x.sum(dtype=np.float64))
        total_sq += float(np.square(x, dtype=np.float64).sum())
        n += x.size
    if n < 2:
        return 0.0, 1.0
    mean = total / n
    var = max(total_sq - n * mean * mean, 0.0) / (n - 1)
    return mean, max(float(np.sqrt(var)), 1e-6)
