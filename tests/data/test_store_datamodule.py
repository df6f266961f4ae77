"""A data module on the feature store: splits kept across a purge, class choice before decoding."""

from __future__ import annotations

import pytest
import soundfile as sf
import torch
from audio_samples import voice, write_csv

from qpae.data.manifest import ManifestDataModule
from qpae.data.store import PurgedError

SPEAKERS = ("ann", "bob", "cy", "dee")


def write_corpus(root, speakers=SPEAKERS, per=6, extra=0):
    rows = []
    for c, speaker in enumerate(speakers):
        for i in range(per + (extra if c == 0 else 0)):
            path = root / f"{speaker}_{i}.wav"
            if not path.exists():
                sf.write(path, voice(0.6, 8_000, 110 + 45 * c + 2 * i, 50 * c + i), 8_000)
            rows.append((path.name, speaker, speaker))
    return write_csv(root / "m.csv", rows)


def module(manifest, cache, **kwargs):
    dm = ManifestDataModule(manifest, cache_dir=cache, **kwargs)
    dm.setup()
    return dm


def record_decodes(monkeypatch) -> list:
    """The sources every data module decodes from now on, in order."""
    decoded = []
    original = ManifestDataModule._decode_one

    def counting(self, source):
        decoded.append(source)
        return original(self, source)

    monkeypatch.setattr(ManifestDataModule, "_decode_one", counting)
    return decoded


def parts(dm) -> dict[str, set[str]]:
    return {s: {str(dm.recordings[r]) for r in dm.recording_ids[dm.indices[s]].tolist()} for s in dm.indices}


def test_a_purge_keeps_the_split_the_classes_and_the_normalisation_of_everyone_else(tmp_path):
    manifest = write_corpus(tmp_path)
    before = module(manifest, tmp_path / "cache")
    purged = before.store().purge(["bob"], "request 1")
    assert purged[0]["speaker"] == "bob" and purged[0]["shards"]
    # bob's audio is still in the folder; the kept split leaves him out and says so
    after = module(manifest, tmp_path / "cache")
    assert after.class_names == before.class_names and after.split_fingerprint == before.split_fingerprint
    assert (after.mean, after.std) == (before.mean, before.std)
    assert after.purged_classes == ["bob"]
    bob = before.class_names.index("bob")
    assert int((after.targets == bob).sum()) == 0
    expected = {s: {r for r in p if "bob_" not in r} for s, p in parts(before).items()}
    assert parts(after) == expected
    others = [c for c in range(len(SPEAKERS)) if c != bob]
    a, b = (
        after.dataset("train", classes=others).tensors[0],
        before.dataset("train", classes=others).tensors[0],
    )
    assert torch.equal(a, b)
    # a new split (another seed) would need bob's recordings: refused, naming him
    with pytest.raises(PurgedError, match="bob.*purged"):
        module(manifest, tmp_path / "cache", split_seed=1)


def test_new_recordings_make_a_new_split_and_decode_only_themselves(tmp_path, monkeypatch):
    manifest = write_corpus(tmp_path)
    first = module(manifest, tmp_path / "cache")
    manifest = write_corpus(tmp_path, extra=2)  # two more clips of ann
    decoded = record_decodes(monkeypatch)
    second = module(manifest, tmp_path / "cache")
    assert sorted(src.recording_id for src in decoded) == ["ann_6.wav", "ann_7.wav"]
    assert second.split_fingerprint != first.split_fingerprint
    assert len(second.targets) == len(first.targets) + 2


def test_classes_are_chosen_before_any_audio_is_decoded(tmp_path, monkeypatch):
    manifest = write_corpus(tmp_path, per=4, extra=3)  # ann has 7 clips, the others 4
    decoded = record_decodes(monkeypatch)
    dm = module(manifest, tmp_path / "cache", classes=["ann", "cy"])
    speakers = [src.speaker for src in decoded]
    assert dm.class_names == ["ann", "cy"] and set(speakers) == {"ann", "cy"} and len(speakers) == 11
    decoded.clear()
    two = module(manifest, tmp_path / "cache", max_classes=2)
    # ann (most clips) and bob (ties broken by name); only bob was not in the store yet
    assert two.class_names == ["ann", "bob"] and [src.speaker for src in decoded] == ["bob"] * 4


def test_a_damaged_shard_is_named_with_the_rebuild_command(tmp_path):
    from qpae.data.store import StoreError

    manifest = write_corpus(tmp_path)
    dm = module(manifest, tmp_path / "cache")
    [shard] = dm.store().shards("cy")
    path = dm.store().shard_dir / shard
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: found when first read
    path.write_bytes(bytes(data))
    flipped = module(manifest, tmp_path / "cache")
    with pytest.raises(StoreError, match=f"{shard} is corrupt.*qpae-store"):
        _ = flipped.dataset("train").tensors
    path.write_bytes(bytes(data[:-10]))  # truncated: found before any work
    with pytest.raises(StoreError, match=f"{shard} is corrupt"):
        module(manifest, tmp_path / "cache")
