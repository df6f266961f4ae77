"""The feature store: per-clip log-mel features sharded by speaker, with a table of contents.

Layout of one store (one dataset, one set of feature settings)::

    <cache_dir>/store/<dataset>-<settings key>/
        store.json          what the store is: dataset, feature settings, format version
        index.sqlite        the table of contents (SQLite, WAL): recordings, shards, purges
        shards/<speaker>-<n>.arrow   Arrow IPC files (pyarrow), rows read in place
        .lock               held by a builder (filelock): one builder at a time

* **Shards.** Each shard holds windows of one speaker only, of at most ``SHARD_RECORDINGS``
  recordings (a column of fixed-size float16 vectors, the recording id and the window number), written whole to a temporary name, fsynced
  and renamed: a shard is either complete or absent. Adding recordings writes new shards; a
  speaker's shards are never rewritten except when one of their recordings changed or vanished.
* **Index.** ``recordings`` (recording id, path, speaker, label, size, mtime, sha256 of the
  file, status, shard, offset, windows), ``shards`` (name, speaker, rows, bytes, sha256) and
  ``purged`` (speaker, shards with their sha256, when, why), and the splits made from it
  (``splits``, ``split_units``: a split is made once and kept, so that purging a speaker leaves
  every other recording in its part and the models trained on it usable). A shard's rows enter the index in the
  same transaction as the shard itself; a file in ``shards/`` the index does not name is a
  killed build's and is removed by the next build.
* **Reading** finds each shard's feature column once (its Arrow footer, read through a brief
  ``pyarrow.memory_map``), then reads the rows a batch needs with ``os.pread``: the operating
  system caches the pages, the process holds only the batch, so its memory does not grow with the
  corpus (a memory map would have counted every page ever read in the process's RSS).

Why Arrow IPC through pyarrow (and not litdata, WebDataset, lhotse or HF ``datasets``): an Arrow
file stores a column contiguously at an offset its footer gives, so any row is one read away, with
no decoding and no copy of the rest (the forget set is a
handful of rows of a few shards); a speaker's features are whole files that deletion removes
with nothing left behind (HF ``datasets`` keeps its own caches of transformed tables, litdata
copies chunks to a local cache, and both mix speakers within chunks; WebDataset tars are
sequential only). Arrow is the format HF ``datasets`` itself maps; pyarrow is its maintained
reference implementation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import filelock
import numpy as np
import pyarrow as pa

log = logging.getLogger(__name__)

STORE_VERSION = 1  # the layout of a store
# what a clip's features are: 2 = log-mel with the 80 dB floor per clip (1 floored each chunk of 512
# clips at its loudest); part of every key that depends on feature values (e.g. the bench's originals)
FEATURE_VERSION = 2
SHARD_RECORDINGS = 256  # recordings per shard at most (a speaker with more gets several shards)
REBUILD = "qpae-store dataset=<name> store.action=rebuild"  # named in every "rebuild it" error


class StoreError(RuntimeError):
    """The store cannot be used as it is; the message says what to do."""


class PurgedError(StoreError):
    """A run needs the data of a speaker who was purged from the store."""


@dataclass(frozen=True)
class Source:
    """One recording the store may hold: where it is and whose it is."""

    recording_id: str  # stable within a dataset (the path relative to the data folder)
    path: Path
    speaker: str
    label: str


@dataclass(frozen=True)
class Decoded:
    """A recording decoded to windows of features ([windows, *shape] float), or why it could not be."""

    windows: np.ndarray | None
    reason: str = ""


def settings_key(dataset: str, settings: dict) -> str:
    text = json.dumps(
        {"v": STORE_VERSION, "f": FEATURE_VERSION, "dataset": dataset, **settings}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def store_path(cache_dir: Path, dataset: str, settings: dict) -> Path:
    return Path(cache_dir) / "store" / f"{dataset}-{settings_key(dataset, settings)}"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _safe(name: str) -> str:
    """A file-name-safe form of a speaker's name, with a digest so that no two names collide."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40] or "_"
    return f"{stem}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


SCHEMA = """
CREATE TABLE IF NOT EXISTS recordings (
    recording_id TEXT PRIMARY KEY, path TEXT NOT NULL, speaker TEXT NOT NULL, label TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL,
    status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    shard TEXT, offset INTEGER, windows INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS recordings_speaker ON recordings (speaker);
CREATE INDEX IF NOT EXISTS recordings_shard ON recordings (shard);
CREATE TABLE IF NOT EXISTS shards (
    name TEXT PRIMARY KEY, speaker TEXT NOT NULL, rows INTEGER NOT NULL, bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS purged (
    speaker TEXT NOT NULL, shards TEXT NOT NULL, purged_at TEXT NOT NULL, reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS splits (
    key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, method TEXT NOT NULL, class_names TEXT NOT NULL,
    mean REAL NOT NULL, std REAL NOT NULL, made_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS split_units (
    key TEXT NOT NULL, unit TEXT NOT NULL, recording_id TEXT NOT NULL, part INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS split_units_key ON split_units (key);
CREATE TABLE IF NOT EXISTS split_sources (
    key TEXT NOT NULL, recording_id TEXT NOT NULL, speaker TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS split_sources_key ON split_sources (key);
CREATE INDEX IF NOT EXISTS split_units_recording ON split_units (recording_id);
"""


@dataclass
class SyncReport:
    """What one :meth:`FeatureStore.sync` did."""

    added: int = 0  # recordings decoded and written
    bad: int = 0  # of which unusable
    removed: int = 0  # recordings gone from the data folder, or changed, whose rows were dropped
    shards_written: int = 0
    shards_deleted: int = 0
    decode_s: float = 0.0


class FeatureStore:
    """One dataset's features under one set of settings (see the module's docstring)."""

    def __init__(self, root: Path, dataset: str, settings: dict, lock_timeout_s: float = 3600.0) -> None:
        self.root = Path(root)
        self.dataset = dataset
        self.settings = settings
        self.shard_dir = self.root / "shards"
        self.lock_timeout_s = lock_timeout_s
        self._layouts: dict[str, tuple[int, int, int]] = {}
        self._verified: set[str] = set()
        meta = self.root / "store.json"
        expected = {"version": STORE_VERSION, "dataset": dataset, "settings": settings}
        if meta.is_file():
            found = json.loads(meta.read_text(encoding="utf-8"))
            if found.get("version") != STORE_VERSION:
                raise StoreError(
                    f"feature store {self.root} has layout version {found.get('version')}, this qpae reads "
                    f"{STORE_VERSION}. Rebuild it: {REBUILD}"
                )
            if found != json.loads(json.dumps(expected)):
                raise StoreError(
                    f"feature store {self.root} was built for {found.get('dataset')!r} with other settings "
                    f"({found.get('settings')}), not {settings}: qpae never mixes settings in one store. "
                    f"Remove it and rebuild: {REBUILD}"
                )
        else:
            self.shard_dir.mkdir(parents=True, exist_ok=True)
            _write_atomic(meta, json.dumps(expected, indent=2, sort_keys=True).encode())
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(SCHEMA)

    def __getstate__(self) -> dict:
        """DataLoader workers and DDP processes check and locate the shards themselves."""
        return {**self.__dict__, "_layouts": {}}

    # --- the index ------------------------------------------------------------------------
    @contextmanager
    def _db(self):
        db = sqlite3.connect(self.root / "index.sqlite", timeout=60)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "PRAGMA secure_delete=ON"
            )  # a purged row's bytes are overwritten, not left in free pages
            with db:  # one transaction
                yield db
        finally:
            db.close()

    @contextmanager
    def building(self):
        """Held while the store changes: a second builder waits (up to ``lock_timeout_s``)."""
        lock = filelock.FileLock(str(self.root / ".lock"))
        try:
            lock.acquire(timeout=self.lock_timeout_s)
        except filelock.Timeout as err:
            raise StoreError(
                f"another process has been building feature store {self.root} for over {self.lock_timeout_s:.0f} s "
                f"(its lock: {self.root / '.lock'}); wait for it, or stop it"
            ) from err
        try:
            self._remove_leftovers()
            yield
        finally:
            lock.release()

    def recordings(self, status: str | None = "ok") -> list[dict]:
        """Index rows (all, or of one status), in recording-id order."""
        query = "SELECT recording_id, path, speaker, label, sha256, status, reason, shard, offset, windows FROM recordings"
        args: tuple = ()
        if status is not None:
            query += " WHERE status = ?"
            args = (status,)
        with self._db() as db:
            rows = db.execute(query + " ORDER BY recording_id", args).fetchall()
        keys = (
            "recording_id",
            "path",
            "speaker",
            "label",
            "sha256",
            "status",
            "reason",
            "shard",
            "offset",
            "windows",
        )
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def shards(self, speaker: str | None = None) -> dict[str, dict]:
        query, args = "SELECT name, speaker, rows, bytes, sha256 FROM shards", ()
        if speaker is not None:
            query, args = query + " WHERE speaker = ?", (speaker,)
        with self._db() as db:
            rows = db.execute(query, args).fetchall()
        return {r[0]: {"speaker": r[1], "rows": r[2], "bytes": r[3], "sha256": r[4]} for r in rows}

    def purged(self) -> dict[str, dict]:
        """Speakers purged from this store: when, why and which shards (names and sha256)."""
        with self._db() as db:
            rows = db.execute("SELECT speaker, shards, purged_at, reason FROM purged").fetchall()
        return {r[0]: {"shards": json.loads(r[1]), "purged_at": r[2], "reason": r[3]} for r in rows}

    # --- building -------------------------------------------------------------------------
    def sync(
        self,
        present: Sequence[Source],
        wanted: Iterable[str],
        decode: Callable[[Source], Decoded],
        threads: int = 1,
    ) -> SyncReport:
        """Make the store hold every recording of ``wanted`` (recording ids of ``present``).

        Index rows of recordings no longer ``present`` or changed on disk (size or mtime) are
        dropped and their speakers' shards rewritten without them; recordings of ``wanted`` not
        yet in the index are decoded by ``decode`` (``threads`` at a time) and written as new
        shards, one or more per speaker. A purged speaker's recordings are refused."""
        report = SyncReport()
        by_id = {s.recording_id: s for s in present}
        wanted = set(wanted)
        unknown = wanted - set(by_id)
        if unknown:
            raise ValueError(f"wanted recordings that are not present: {sorted(unknown)[:5]}")
        self._refuse_purged(by_id, wanted)  # before any work
        with self.building():
            self._refuse_purged(by_id, wanted)  # and again: a purge may have run while this one waited
            stale = self._stale(by_id)
            if stale:
                report.removed = len(stale)
                report.shards_deleted = self._drop(stale)
            with self._db() as db:
                known = {r[0] for r in db.execute("SELECT recording_id FROM recordings")}
            todo = sorted(wanted - known)
            if todo:
                t0 = time.perf_counter()
                self._add([by_id[r] for r in todo], decode, threads, report)
                report.decode_s = time.perf_counter() - t0
        return report

    def _refuse_purged(self, by_id: dict[str, Source], wanted: set[str]) -> None:
        purged = self.purged()
        back = sorted({by_id[r].speaker for r in wanted if by_id[r].speaker in purged})
        if back:
            first = purged[back[0]]
            raise PurgedError(
                f"{self.dataset}: speaker(s) {back} were purged from the feature store {self.root} "
                f"({first['purged_at']}: {first['reason']}), but their recordings are still in the data folder "
                f"(e.g. {next(by_id[r].path for r in wanted if by_id[r].speaker == back[0])}). Delete their audio "
                "upstream or leave them out (dataset.classes); to evaluate an erasure, point dataset.cache_dir at "
                "an evaluation copy of the store kept before the purge (qpae-store … store.action=copy)."
            )

    def _stale(self, by_id: dict[str, Source]) -> list[str]:
        """Recording ids in the index that are gone from the data folder, changed on disk, or
        now given to another speaker (their features sit in the old speaker's shard). A label is
        a view of a recording (FSDD by speaker or by digit share one store): it never makes a
        recording stale; the index keeps the label it was first stored with."""
        with self._db() as db:
            rows = db.execute(
                "SELECT recording_id, speaker, label, size, mtime_ns FROM recordings"
            ).fetchall()
        stale = []
        for rid, speaker, _label, size, mtime in rows:
            src = by_id.get(rid)
            if src is None or src.speaker != speaker:  # gone, or now someone else's (their shard holds it)
                stale.append(rid)
                continue
            try:
                st = src.path.stat()
            except OSError:
                stale.append(rid)
                continue
            if (st.st_size, st.st_mtime_ns) != (size, mtime):
                stale.append(rid)
        return stale

    def _drop(self, recording_ids: list[str]) -> int:
        """Remove recordings from the index, and every kept split made from any of them; rewrite
        the shards that held them without them, one shard per transaction (a kill between two
        leaves every shard either old and fully indexed, or new and fully indexed)."""
        drop = set(recording_ids)
        with self._db() as db:
            _temp_ids(db, drop)
            touched = [
                r[0]
                for r in db.execute(
                    "SELECT DISTINCT shard FROM recordings WHERE shard IS NOT NULL "
                    "AND recording_id IN (SELECT id FROM temp_ids) ORDER BY shard"
                )
            ]
        deleted = 0
        for shard in touched:
            table = self._read_table(shard)
            keep = np.array([rid not in drop for rid in table.column("recording_id").to_pylist()], dtype=bool)
            kept = table.filter(pa.array(keep))
            speaker = self.shards()[shard]["speaker"]
            new = self._write_shard(speaker, kept) if kept.num_rows else None
            with self._db() as db:
                _temp_ids(db, drop)
                db.execute(
                    "DELETE FROM recordings WHERE shard = ? AND recording_id IN (SELECT id FROM temp_ids)",
                    (shard,),
                )
                db.execute("DELETE FROM shards WHERE name = ?", (shard,))
                if new is not None:
                    self._register(db, new, speaker, kept)
            self._unlink_shard(shard)  # unregistered now: a kill here leaves a leftover, removed later
            deleted += 1
        with self._db() as db:  # recordings that had no shard (unusable ones), and stale splits
            _temp_ids(db, drop)
            db.execute("DELETE FROM recordings WHERE recording_id IN (SELECT id FROM temp_ids)")
            keys = [
                (k,)
                for (k,) in db.execute(
                    "SELECT DISTINCT key FROM split_units WHERE recording_id IN (SELECT id FROM temp_ids) "
                    "UNION SELECT DISTINCT key FROM split_sources WHERE recording_id IN (SELECT id FROM temp_ids)"
                )
            ]
            for table in ("split_sources", "split_units", "splits"):
                db.executemany(f"DELETE FROM {table} WHERE key = ?", keys)
        return deleted

    def _add(self, sources: list[Source], decode, threads: int, report: SyncReport) -> None:
        from concurrent.futures import ThreadPoolExecutor

        by_speaker: dict[str, list[Source]] = {}
        for s in sources:
            by_speaker.setdefault(s.speaker, []).append(s)
        # a speaker's recordings go into shards of at most SHARD_RECORDINGS: what one build step
        # holds in memory is bounded even where a shard group is large (a label without speakers)
        groups = [
            (speaker, by_speaker[speaker][i : i + SHARD_RECORDINGS])
            for speaker in sorted(by_speaker)
            for i in range(0, len(by_speaker[speaker]), SHARD_RECORDINGS)
        ]
        with ThreadPoolExecutor(max(1, threads)) as pool:
            for speaker, group in groups:
                both = list(pool.map(lambda src: (decode(src), _stat(src.path)), group))
                decoded, stats = [b[0] for b in both], [b[1] for b in both]
                ok = [
                    (s, d)
                    for s, d in zip(group, decoded, strict=True)
                    if d.windows is not None and len(d.windows)
                ]
                table = _table([s.recording_id for s, _ in ok], [d.windows for _, d in ok]) if ok else None
                shard = self._write_shard(speaker, table) if table is not None else None
                with self._db() as db:
                    if shard is not None:
                        self._register(db, shard, speaker, table)
                    offset = 0
                    for s, d, (size, mtime, digest) in zip(group, decoded, stats, strict=True):
                        n = 0 if d.windows is None else len(d.windows)
                        usable = n > 0
                        db.execute(
                            "INSERT OR REPLACE INTO recordings VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                            (
                                s.recording_id,
                                str(s.path),
                                s.speaker,
                                s.label,
                                size,
                                mtime,
                                digest,
                                "ok" if usable else "bad",
                                "" if usable else (d.reason or "no windows"),
                                shard if usable else None,
                                offset if usable else None,
                                n,
                            ),
                        )
                        offset += n
                        report.added += 1
                        report.bad += 0 if usable else 1
                report.shards_written += shard is not None

    def _register(self, db, shard: str, speaker: str, table: pa.Table) -> None:
        path = self.shard_dir / shard
        db.execute(
            "INSERT INTO shards VALUES (?,?,?,?,?)",
            (shard, speaker, table.num_rows, path.stat().st_size, sha256_file(path)),
        )
        rows = table.column("recording_id").to_pylist()
        first: dict[str, int] = {}
        for i, rid in enumerate(rows):
            first.setdefault(rid, i)
        for rid, offset in first.items():  # a rewritten shard moves its recordings' rows
            db.execute(
                "UPDATE recordings SET shard = ?, offset = ? WHERE recording_id = ?", (shard, offset, rid)
            )

    def _write_shard(self, speaker: str, table: pa.Table) -> str:
        stem = _safe(speaker)
        n = 0
        while (self.shard_dir / f"{stem}-{n:04d}.arrow").exists():
            n += 1
        name = f"{stem}-{n:04d}.arrow"
        fd, tmp = tempfile.mkstemp(dir=self.shard_dir, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                with pa.ipc.new_file(f, table.schema) as writer:
                    writer.write_table(table, max_chunksize=max(1, table.num_rows))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.shard_dir / name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return name

    def _unlink_shard(self, shard: str) -> None:
        self._layouts.pop(shard, None)
        self._verified.discard(shard)
        (self.shard_dir / shard).unlink(missing_ok=True)

    def _remove_leftovers(self) -> None:
        """A killed build's temporary files and shards the index never registered."""
        registered = set(self.shards())
        for path in self.shard_dir.iterdir():
            if path.name.endswith(".tmp") or (path.suffix == ".arrow" and path.name not in registered):
                log.info("removing a killed build's leftover %s", path)
                path.unlink(missing_ok=True)

    def record_purges(self, purged: dict[str, dict]) -> None:
        """Carry purge records (:meth:`purged`) into this store: a rebuilt store still refuses
        the speakers purged from the one it replaces."""
        with self._db() as db:
            db.executemany(
                "INSERT INTO purged VALUES (?,?,?,?)",
                [(k, json.dumps(v["shards"]), v["purged_at"], v["reason"]) for k, v in purged.items()],
            )

    def copy_to(self, target: Path) -> None:
        """A consistent copy of this store at ``target`` (shards, and the index through SQLite's
        online backup), made while no builder changes it."""
        with self.building():
            shutil.copytree(
                self.root, target, ignore=shutil.ignore_patterns(".lock", "*.tmp", "index.sqlite*")
            )
            src = sqlite3.connect(self.root / "index.sqlite")
            dst = sqlite3.connect(target / "index.sqlite")
            try:
                src.backup(dst)
            finally:
                src.close()
                dst.close()

    def release(self) -> None:
        """Forget where this process found each shard (e.g. after another object purged shards)."""
        self._layouts.clear()
        self._verified.clear()

    # --- erasure --------------------------------------------------------------------------
    def purge(self, speakers: Sequence[str], reason: str) -> list[dict]:
        """Delete every shard and index row of ``speakers``; record the purge (shard names and
        sha256, never content). A speaker the store does not hold is an error."""
        with self._db() as db:
            held = {r[0] for r in db.execute("SELECT DISTINCT speaker FROM recordings")}
        missing = [s for s in speakers if s not in held]
        if missing:
            raise StoreError(
                f"cannot purge {missing} from feature store {self.root}: it holds no recordings of them "
                f"(it holds {len(held)} speakers)"
            )
        out = []
        with self.building():
            for speaker in speakers:
                shards = self.shards(speaker)
                gone = [{"shard": name, "sha256": info["sha256"]} for name, info in sorted(shards.items())]
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                # the index first, in one transaction (rows gone, purge recorded), then the files: a
                # kill in between leaves unregistered shards, which the next build removes
                with self._db() as db:
                    db.execute("DELETE FROM shards WHERE speaker = ?", (speaker,))
                    db.execute(
                        "DELETE FROM split_units WHERE recording_id IN "
                        "(SELECT recording_id FROM recordings WHERE speaker = ?)",
                        (speaker,),
                    )
                    db.execute("DELETE FROM split_sources WHERE speaker = ?", (speaker,))
                    db.execute("DELETE FROM recordings WHERE speaker = ?", (speaker,))
                    db.execute(
                        "INSERT INTO purged VALUES (?,?,?,?)", (speaker, json.dumps(gone), stamp, reason)
                    )
                for name in shards:
                    self._unlink_shard(name)
                out.append({"speaker": speaker, "shards": gone})
            with self._db() as db:  # the write-ahead log holds the deleted rows until checkpointed
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        log.info(
            "purged %s from %s (%d shards)", list(speakers), self.root, sum(len(o["shards"]) for o in out)
        )
        return out

    # --- splits ---------------------------------------------------------------------------
    def save_split(
        self,
        key: str,
        fingerprint: str,
        method: str,
        class_names: Sequence[str],
        units: Sequence[tuple[str, str, int]],
        mean: float,
        std: float,
        sources: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Keep a split: its fingerprint, classes, every unit's (unit id, recording id, part) and
        the normalisation of its training windows (the models' input pipeline, kept unchanged by
        a purge), and ``sources``: every usable (recording id, speaker) the classes were chosen
        from. A split made again under the same key (the data changed) replaces the old one."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self.building(), self._db() as db:  # a copy (qpae-store copy) never sees half a split
            db.execute("DELETE FROM split_units WHERE key = ?", (key,))
            db.execute(
                "INSERT OR REPLACE INTO splits VALUES (?,?,?,?,?,?,?)",
                (key, fingerprint, method, json.dumps(list(class_names)), float(mean), float(std), stamp),
            )
            db.executemany("INSERT INTO split_units VALUES (?,?,?,?)", [(key, *u) for u in units])
            db.execute("DELETE FROM split_sources WHERE key = ?", (key,))
            db.executemany("INSERT INTO split_sources VALUES (?,?,?)", [(key, *src) for src in sources])

    def load_split(self, key: str) -> dict | None:
        """A kept split (fingerprint, method, class names, units), or None."""
        with self._db() as db:
            head = db.execute(
                "SELECT fingerprint, method, class_names, mean, std, made_at FROM splits WHERE key = ?",
                (key,),
            ).fetchone()
            if head is None:
                return None
            units = db.execute(
                "SELECT unit, recording_id, part FROM split_units WHERE key = ? ORDER BY rowid", (key,)
            ).fetchall()
            sources = {
                r[0] for r in db.execute("SELECT recording_id FROM split_sources WHERE key = ?", (key,))
            }
        return {
            "fingerprint": head[0],
            "method": head[1],
            "class_names": json.loads(head[2]),
            "mean": head[3],
            "std": head[4],
            "made_at": head[5],
            "units": units,
            "sources": sources,
        }

    # --- reading --------------------------------------------------------------------------
    def _read_table(self, shard: str) -> pa.Table:
        path = self.shard_dir / shard
        if not path.is_file():
            raise StoreError(f"feature store {self.root}: shard {shard} is missing. Rebuild: {REBUILD}")
        return pa.ipc.open_file(pa.memory_map(str(path))).read_all()

    def verify(self, shards: Iterable[str], content: bool = True) -> None:
        """Each shard exists with the size the index holds and (``content``) its sha256: the
        content once per process and shard, when it is first read (a data module checks sizes
        before any work, and each DDP process hashes only the shards it reads)."""
        todo = sorted(set(shards) - self._verified)
        with self._db() as db:
            info = {}
            for shard in todo:
                row = db.execute("SELECT bytes, sha256 FROM shards WHERE name = ?", (shard,)).fetchone()
                if row is not None:
                    info[shard] = {"bytes": row[0], "sha256": row[1]}
        for shard in todo:
            path = self.shard_dir / shard
            expected = info.get(shard)
            if expected is None or not path.is_file():
                raise StoreError(f"feature store {self.root}: shard {shard} is missing. Rebuild: {REBUILD}")
            if path.stat().st_size != expected["bytes"] or (
                content and sha256_file(path) != expected["sha256"]
            ):
                raise StoreError(
                    f"feature store {self.root}: shard {shard} is corrupt (its sha256 is not the index's). "
                    f"Rebuild: {REBUILD}"
                )
            if content:
                self._verified.add(shard)

    def _layout(self, shard: str) -> tuple[int, int, int]:
        """Where a shard's features lie in its file: (byte offset, rows, values per row); the
        shard is checked against the index's sha256 when first read in this process. The file is
        mapped only while its Arrow footer is read, then unmapped."""
        if shard not in self._layouts:
            self.verify([shard])
            path = self.shard_dir / shard
            whole = pa.memory_map(str(path)).read_buffer()  # zero copy: addresses locate the column
            column = pa.ipc.open_file(whole).read_all().column("x")
            # a shard is written as one record batch of one column of fixed-size lists
            if (
                column.num_chunks != 1
                or column.chunk(0).offset != 0
                or column.type.value_type != pa.float16()
            ):
                raise StoreError(
                    f"feature store {self.root}: shard {shard} is not one record batch of float16 rows "
                    f"(written by another tool?). Rebuild: {REBUILD}"
                )
            chunk = column.chunk(0)
            values = chunk.values.buffers()[1]
            n, dim = len(chunk), chunk.type.list_size
            offset = values.address - whole.address + 2 * chunk.values.offset
            if offset < 0 or offset + 2 * n * dim > whole.size:  # read with a copy: not this writer's file
                raise StoreError(
                    f"feature store {self.root}: shard {shard}'s features do not lie in the file as written "
                    f"(compressed or rewritten by another tool?). Rebuild: {REBUILD}"
                )
            st = os.stat(path)
            self._layouts[shard] = (offset, n, dim, st.st_ino, st.st_size)
            del whole, column, chunk, values  # unmapped: nothing of the shard stays in this process
        return self._layouts[shard][:3]

    def read_rows(self, shard: str, rows: np.ndarray) -> np.ndarray:
        """Rows of a shard's features, [len(rows), dim] float16, read with ``os.pread`` (runs of
        consecutive rows in one call). Nothing is mapped: the pages stay in the operating
        system's cache, not in this process, so its memory does not grow with what it has read."""
        offset, n, dim = self._layout(shard)
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), dim), dtype=np.float16)
        if not len(rows):
            return out
        if rows.min() < 0 or rows.max() >= n:
            raise IndexError(f"feature store {self.root}: shard {shard} has {n} rows, asked for {rows.max()}")
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
        try:
            fd = os.open(self.shard_dir / shard, os.O_RDONLY)
        except FileNotFoundError:
            raise StoreError(
                f"feature store {self.root}: shard {shard} is missing. Rebuild: {REBUILD}"
            ) from None
        try:
            st = os.fstat(fd)
            if (st.st_ino, st.st_size) != self._layouts[shard][3:]:
                # another process replaced the shard under the same name (a purge, then a rebuild)
                raise StoreError(
                    f"feature store {self.root}: shard {shard} changed on disk since this process checked it "
                    f"(another process rebuilt it?); start the run again. Rebuild if it persists: {REBUILD}"
                )
            gathered = np.empty((len(rows), dim), dtype=np.float16)
            for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(rows)], strict=True):
                first, count = int(sorted_rows[start]), int(stop - start)
                size = count * dim * 2
                data = os.pread(fd, size, offset + first * dim * 2)
                if len(data) != size:
                    raise StoreError(
                        f"feature store {self.root}: shard {shard} is truncated. Rebuild: {REBUILD}"
                    )
                gathered[start:stop] = np.frombuffer(data, dtype=np.float16).reshape(count, dim)
        finally:
            os.close(fd)
        out[order] = gathered
        return out

    def features(self, shard: str) -> np.ndarray:
        """A shard's features, [rows, dim] float16 (a copy: for small shards and checks; training
        reads rows with :meth:`read_rows`)."""
        return self.read_rows(shard, np.arange(self._layout(shard)[1]))


def stores_of(cache_dir: Path, dataset: str, data_dir: str | None = None) -> list[FeatureStore]:
    """Every store of ``dataset`` under ``cache_dir`` (of one data folder, if given), whatever
    its feature settings."""
    root = Path(cache_dir) / "store"
    out = []
    for folder in sorted(root.glob(f"{dataset}-*")) if root.is_dir() else []:
        meta = folder / "store.json"
        if not meta.is_file():
            continue
        found = json.loads(meta.read_text(encoding="utf-8"))
        if found.get("dataset") == dataset and data_dir in (None, found["settings"].get("data_dir")):
            out.append(FeatureStore(folder, dataset, found["settings"]))
    return out


def purge_everywhere(
    cache_dirs: Iterable[Path], dataset: str, data_dir: str, speakers: Sequence[str], reason: str
) -> dict:
    """Purge ``speakers`` from every store of ``dataset``'s folder ``data_dir`` in ``cache_dirs``
    (every feature setting), and remove the dataset's whole-corpus caches from before the store. A speaker no
    store holds is an error before anything is deleted. Returns what was deleted (names and
    sha256 of shards, names of old caches), never content."""
    from qpae.data import legacy_cache

    dirs = list(dict.fromkeys(Path(d).resolve() for d in cache_dirs))
    stores = [s for d in dirs for s in stores_of(d, dataset, data_dir)]
    held = {s.root: {r["speaker"] for r in s.recordings(None)} for s in stores}
    nowhere = [sp for sp in speakers if not any(sp in h for h in held.values())]
    if nowhere:
        raise StoreError(
            f"cannot purge {nowhere}: no feature store of {dataset} under {[str(d) for d in dirs]} holds their "
            f"recordings (they hold: {sorted(set().union(*held.values()))[:20]})"
        )
    out = {"speakers": list(speakers), "reason": reason, "stores": [], "legacy_caches_removed": []}
    for store in stores:
        mine = [sp for sp in speakers if sp in held[store.root]]
        if mine:
            out["stores"].append({"store": str(store.root), "purged": store.purge(mine, reason)})
    for d in dirs:
        out["legacy_caches_removed"] += legacy_cache.remove(d, dataset)
    out["purged_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return out


def _temp_ids(db, ids: Iterable[str]) -> None:
    """A connection's temporary table of recording ids (no limit on their number, unlike ``IN (?, …)``)."""
    db.execute("CREATE TEMP TABLE IF NOT EXISTS temp_ids (id TEXT PRIMARY KEY)")
    db.execute("DELETE FROM temp_ids")
    db.executemany("INSERT OR IGNORE INTO temp_ids VALUES (?)", [(i,) for i in ids])


def _stat(path: Path) -> tuple[int, int, str]:
    """Size, mtime and sha256 of a recording; only a regular file is ever opened (a FIFO or a
    device named by a manifest is not: the decoder counts it as unusable)."""
    try:
        st = path.stat()
    except OSError:
        return -1, -1, ""
    if not stat.S_ISREG(st.st_mode):
        return st.st_size, st.st_mtime_ns, ""
    return st.st_size, st.st_mtime_ns, sha256_file(path)


def _table(recording_ids: list[str], windows: list[np.ndarray]) -> pa.Table:
    """One shard's rows: each window of each recording, features flattened to float16."""
    rids, idx, flat = [], [], []
    for rid, w in zip(recording_ids, windows, strict=True):
        w = np.asarray(w, dtype=np.float16).reshape(len(w), -1)
        rids += [rid] * len(w)
        idx += list(range(len(w)))
        flat.append(w)
    x = np.concatenate(flat)
    values = pa.array(x.reshape(-1), type=pa.float16())
    return pa.table(
        {
            "recording_id": pa.array(rids, type=pa.string()),
            "window": pa.array(idx, type=pa.int32()),
            "x": pa.FixedSizeListArray.from_arrays(values, x.shape[1]),
        }
    )


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


__all__ = [
    "Decoded",
    "FeatureStore",
    "PurgedError",
    "Source",
    "StoreError",
    "SyncReport",
    "sha256_file",
    "purge_everywhere",
    "store_path",
    "stores_of",
]
