"""The feature store on hand-made sources: layout, incremental add and purge, corruption, locks."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from qpae.data.store import Decoded, FeatureStore, PurgedError, Source, StoreError
from qpae.data.windows_dataset import WindowDataset

SETTINGS = {"features": {"n_mels": 4}, "window": False}


def sources(tmp_path: Path, speakers=("ann", "bob", "cy"), per=3) -> list[Source]:
    out = []
    for s in speakers:
        for i in range(per):
            path = tmp_path / "audio" / f"{s}-{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_bytes(f"{s}{i}".encode())
            out.append(Source(f"{s}-{i}.wav", path, s, s))
    return out


def decode(src: Source) -> Decoded:
    """Features that depend on the clip alone: its name's bytes, 2 windows of 6 values."""
    if src.recording_id.startswith("bad"):
        return Decoded(None, "unreadable")
    seed = sum(src.path.read_bytes())
    return Decoded(np.random.default_rng(seed).normal(size=(2, 6)).astype(np.float32))


def open_store(tmp_path: Path, settings=SETTINGS) -> FeatureStore:
    return FeatureStore(tmp_path / "store", "toy", settings)


def rows(store: FeatureStore, rid: str) -> np.ndarray:
    [r] = [r for r in store.recordings() if r["recording_id"] == rid]
    return np.asarray(store.features(r["shard"])[r["offset"] : r["offset"] + r["windows"]], dtype=np.float32)


def test_one_shard_per_speaker_and_features_per_clip(tmp_path):
    src = sources(tmp_path)
    store = open_store(tmp_path)
    report = store.sync(src, [s.recording_id for s in src], decode, threads=2)
    assert (report.added, report.shards_written, report.bad) == (9, 3, 0)
    shards = store.shards()
    assert sorted(i["speaker"] for i in shards.values()) == ["ann", "bob", "cy"]
    # every recording's rows live in its speaker's shard, and are its own clip's features
    for r in store.recordings():
        assert shards[r["shard"]]["speaker"] == r["speaker"]
        alone = decode(next(s for s in src if s.recording_id == r["recording_id"])).windows
        np.testing.assert_array_equal(
            rows(store, r["recording_id"]), alone.astype(np.float16).astype(np.float32)
        )
    # a store of one recording holds the same features for it as the store of all
    other = FeatureStore(tmp_path / "alone", "toy", SETTINGS)
    other.sync(src, ["bob-1.wav"], decode)
    np.testing.assert_array_equal(rows(other, "bob-1.wav"), rows(store, "bob-1.wav"))


def test_a_large_shard_group_is_split_into_bounded_shards(tmp_path, monkeypatch):
    monkeypatch.setattr("qpae.data.store.SHARD_RECORDINGS", 2)
    src = sources(tmp_path, speakers=("ann", "bob"), per=5)
    store = open_store(tmp_path)
    report = store.sync(src, [s.recording_id for s in src], decode)
    assert report.shards_written == 6  # 5 recordings each: shards of 2, 2 and 1
    assert all(i["rows"] <= 2 * 2 for i in store.shards().values())  # 2 windows per recording
    for s in src:
        alone = decode(s).windows.astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(rows(store, s.recording_id), alone)
    [entry] = store.purge(["ann"], reason="test")
    assert len(entry["shards"]) == 3 and len(store.shards()) == 3


def test_reading_a_store_larger_than_a_memory_budget_copies_none_of_it(tmp_path):
    """Every window read through the store comes from memory-mapped shards: reading the whole
    store (8x the budget) allocates nothing in pyarrow's pool and no shard array owns memory."""
    budget = 256 << 10

    def big(src: Source) -> Decoded:  # 4 windows of 4096 values: 32 KiB of float16 per clip
        return Decoded(
            np.random.default_rng(sum(src.path.read_bytes())).normal(size=(4, 4096)).astype(np.float32)
        )

    src = sources(tmp_path, speakers=[f"s{k:02d}" for k in range(16)], per=4)
    store = open_store(tmp_path)
    store.sync(src, [s.recording_id for s in src], big)
    recs = store.recordings()
    shard_names = sorted(store.shards())
    size = sum(i["bytes"] for i in store.shards().values())
    assert size > 8 * budget
    windows = [(shard_names.index(r["shard"]), r["offset"] + w) for r in recs for w in range(r["windows"])]
    data = WindowDataset(
        store,
        shard_names,
        np.array([w[0] for w in windows]),
        np.array([w[1] for w in windows]),
        torch.zeros(len(windows), dtype=torch.long),
        (1, 64, 64),
    )
    before = pa.total_allocated_bytes()
    total = 0.0
    for start in range(0, len(data), 32):
        x, _ = data.__getitems__(list(range(start, min(len(data), start + 32))))
        total += float(x.sum())
    assert np.isfinite(total)
    assert pa.total_allocated_bytes() - before < budget  # nothing copied into pyarrow's pool
    mapped = Path("/proc/self/maps")
    if mapped.is_file():  # and no shard is mapped into the process: its pages are the OS's cache
        assert str(store.shard_dir) not in mapped.read_text()
    # the rows read are the clips' own features, in the order asked for
    picks = np.array([5, 0, 1, 2, 9, 3])
    np.testing.assert_array_equal(data.raw(picks), np.concatenate([data.raw([p]) for p in picks]))


def test_adding_recordings_writes_new_shards_and_touches_no_other(tmp_path):
    src = sources(tmp_path, per=2)
    store = open_store(tmp_path)
    store.sync(src, [s.recording_id for s in src], decode)
    before = {p.name: p.stat().st_mtime_ns for p in store.shard_dir.iterdir()}
    more = sources(tmp_path, speakers=("ann", "dee"), per=3)
    everything = {s.recording_id: s for s in [*src, *more]}
    report = store.sync(list(everything.values()), everything, decode)
    assert report.added == 4 and report.shards_written == 2 and report.removed == 0
    after = {p.name: p.stat().st_mtime_ns for p in store.shard_dir.iterdir()}
    assert all(after[name] == t for name, t in before.items())  # untouched
    assert len(after) == len(before) + 2
    # a second sync of the same data decodes nothing
    assert store.sync(list(everything.values()), everything, decode).added == 0


def test_a_recording_gone_from_the_folder_leaves_the_store(tmp_path):
    src = sources(tmp_path)
    store = open_store(tmp_path)
    store.sync(src, [s.recording_id for s in src], decode)
    src[0].path.unlink()  # ann-0 deleted upstream
    left = src[1:]
    report = store.sync(left, [s.recording_id for s in left], decode)
    assert report.removed == 1 and report.shards_deleted == 1 and report.added == 0
    ids = [r["recording_id"] for r in store.recordings()]
    assert "ann-0.wav" not in ids and len(ids) == 8
    assert rows(store, "ann-1.wav").shape == (2, 6)  # the rest of ann's shard was kept
    assert all(p.suffix == ".arrow" for p in store.shard_dir.iterdir()) and len(store.shards()) == 3


def test_purge_deletes_the_speakers_shards_and_rows_and_refuses_them_back(tmp_path):
    src = sources(tmp_path)
    store = open_store(tmp_path)
    store.sync(src, [s.recording_id for s in src], decode)
    bob = dict(store.shards("bob"))
    others = {p.name: p.stat().st_mtime_ns for p in store.shard_dir.iterdir() if p.name not in bob}
    purged = store.purge(["bob"], "request 1")
    assert purged == [
        {"speaker": "bob", "shards": [{"shard": n, "sha256": i["sha256"]} for n, i in bob.items()]}
    ]
    assert not any((store.shard_dir / n).exists() for n in bob)
    assert {p.name: p.stat().st_mtime_ns for p in store.shard_dir.iterdir()} == others
    assert "bob" not in {r["speaker"] for r in store.recordings(None)}
    assert store.purged()["bob"]["reason"] == "request 1"
    # bob's audio is still in the folder: the store will not take him back silently
    with pytest.raises(PurgedError, match="bob"):
        store.sync(src, [s.recording_id for s in src], decode)
    keep = [s.recording_id for s in src if s.speaker != "bob"]
    assert store.sync(src, keep, decode).added == 0
    with pytest.raises(StoreError, match="holds no recordings of them"):
        store.purge(["nobody"], "request 2")


def test_unusable_recordings_are_indexed_once_and_not_decoded_again(tmp_path):
    src = [*sources(tmp_path, speakers=("ann",)), Source("bad-0.wav", tmp_path / "bad.wav", "ann", "ann")]
    src[-1].path.write_bytes(b"x")
    store = open_store(tmp_path)
    report = store.sync(src, [s.recording_id for s in src], decode)
    assert report.bad == 1
    [bad] = store.recordings("bad")
    assert bad["reason"] == "unreadable" and bad["shard"] is None
    assert store.sync(src, [s.recording_id for s in src], decode).added == 0


def test_other_settings_are_refused_and_a_corrupt_or_missing_shard_is_named(tmp_path):
    src = sources(tmp_path)
    store = open_store(tmp_path)
    store.sync(src, [s.recording_id for s in src], decode)
    with pytest.raises(StoreError, match="other settings.*rebuild"):
        open_store(tmp_path, {**SETTINGS, "window": True})
    name = sorted(store.shards())[0]
    path = store.shard_dir / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    fresh = open_store(tmp_path)
    with pytest.raises(StoreError, match=f"{name} is corrupt.*qpae-store"):
        fresh.verify(fresh.shards())
    path.unlink()
    with pytest.raises(StoreError, match=f"{name} is missing"):
        open_store(tmp_path).verify([name])


def test_a_killed_builds_leftovers_are_removed_and_never_read(tmp_path):
    src = sources(tmp_path)
    store = open_store(tmp_path)
    store.sync(src, [s.recording_id for s in src[:3]], decode)
    (store.shard_dir / ".bob-x.arrow.123.tmp").write_bytes(b"half")
    (store.shard_dir / "bob-deadbeef-0000.arrow").write_bytes(b"written, never registered")
    store.sync(src, [s.recording_id for s in src], decode)
    assert sorted(p.name for p in store.shard_dir.iterdir()) == sorted(store.shards())
    assert json.loads((store.root / "store.json").read_text())["dataset"] == "toy"


def _hold_lock(root: str, ready, seconds: float) -> None:
    store = FeatureStore(Path(root), "toy", SETTINGS)
    with store.building():
        ready.set()
        time.sleep(seconds)


def test_a_second_builder_waits_for_the_first_or_fails_clearly(tmp_path):
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path / "store"), ready, 30))
    holder.start()
    try:
        assert ready.wait(60)
        impatient = FeatureStore(tmp_path / "store", "toy", SETTINGS, lock_timeout_s=0.2)
        with pytest.raises(StoreError, match="another process"):
            impatient.sync(sources(tmp_path), ["ann-0.wav"], decode)
    finally:
        holder.terminate()
        holder.join()
    # the holder is gone (killed): its lock is free again
    store = FeatureStore(tmp_path / "store", "toy", SETTINGS, lock_timeout_s=5)
    assert store.sync(sources(tmp_path), ["ann-0.wav"], decode).added == 1


def test_a_recording_given_to_another_speaker_leaves_the_old_speakers_shard(tmp_path):
    src = sources(tmp_path)
    store = open_store(tmp_path)
    store.sync(src, [s.recording_id for s in src], decode)
    moved = [
        Source(s.recording_id, s.path, "bob", "bob") if s.recording_id == "ann-0.wav" else s for s in src
    ]
    report = store.sync(moved, [s.recording_id for s in moved], decode)
    assert report.removed == 1 and report.added == 1
    [row] = [r for r in store.recordings() if r["recording_id"] == "ann-0.wav"]
    assert row["speaker"] == "bob" and store.shards()[row["shard"]]["speaker"] == "bob"
    # a purge of bob now takes that recording's features with him
    store.purge(["bob"], "request")
    assert "ann-0.wav" not in {r["recording_id"] for r in store.recordings(None)}


def test_a_copy_is_consistent_and_a_rebuilt_store_still_refuses_purged_speakers(tmp_path):
    src = sources(tmp_path)
    store = open_store(tmp_path)
    store.sync(src, [s.recording_id for s in src], decode)
    store.copy_to(tmp_path / "copy")
    store.purge(["bob"], "request 1")
    copy = FeatureStore(tmp_path / "copy", "toy", SETTINGS)
    assert "bob" in {r["speaker"] for r in copy.recordings()} and not copy.purged()
    np.testing.assert_array_equal(
        rows(copy, "bob-1.wav"), decode(src[4]).windows.astype(np.float16).astype(np.float32)
    )
    rebuilt = FeatureStore(tmp_path / "rebuilt", "toy", SETTINGS)
    rebuilt.record_purges(store.purged())
    with pytest.raises(PurgedError, match="bob"):
        rebuilt.sync(src, [s.recording_id for s in src], decode)


def test_dropping_a_recording_forgets_the_kept_splits_made_from_it(tmp_path):
    src = sources(tmp_path)
    store = open_store(tmp_path)
    store.sync(src, [s.recording_id for s in src], decode)
    units = [(s.recording_id, s.recording_id, i % 3) for i, s in enumerate(src)]
    store.save_split(
        "k",
        "fp",
        "recording",
        ["ann", "bob", "cy"],
        units,
        0.0,
        1.0,
        [(s.recording_id, s.speaker) for s in src],
    )
    assert store.load_split("k")["fingerprint"] == "fp"
    src[2].path.write_bytes(b"changed content")  # ann-2 changed on disk: decoded again
    assert store.sync(src, [s.recording_id for s in src], decode).removed == 1
    assert store.load_split("k") is None
