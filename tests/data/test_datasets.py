"""Every loader on real recordings (../shared/data) or on fixtures written here."""

import csv
import logging

import numpy as np
import pytest
import soundfile as sf
import torch

from qpae.data import legacy_cache
from qpae.data.accent_archive import AccentArchiveDataModule
from qpae.data.audiomnist import AudioMNISTDataModule
from qpae.data.base import DataQualityError
from qpae.data.download import DatasetNotFoundError
from qpae.data.fsdd import FSDDDataModule
from qpae.data.librispeech import LibriSpeechDataModule
from qpae.data.manifest import ManifestDataModule
from qpae.data.speech_commands import SpeechCommandsDataModule

FSDD_SPEAKERS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]


def voice(seconds: float, sr: int, f0: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    harmonics = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    return (0.2 * harmonics + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def fsdd(shared_data, feature_cache):
    dm = FSDDDataModule(shared_data / "fsdd", cache_dir=feature_cache)
    dm.setup()
    return dm


def test_fsdd_speakers_split_and_views(fsdd):
    assert fsdd.class_names == FSDD_SPEAKERS
    assert fsdd.input_shape == (1, 64, 101)
    sizes = {s: len(fsdd.indices[s]) for s in ("train", "val", "test")}
    assert sizes == {"train": 2100, "val": 300, "test": 600}
    # stratified: each speaker has 500 clips → 100 test each
    assert torch.bincount(fsdd.targets[fsdd.indices["test"]]).tolist() == [100] * 6
    forget, retain = fsdd.forget_set([0]), fsdd.retain_set([0])
    assert len(forget) == 350 and len(retain) == 1750
    assert set(forget.tensors[1].tolist()) == {0} and 0 not in set(retain.tensors[1].tolist())
    # forget/retain views come from the training split only: no test window is in them
    train_rows = {tuple(r) for r in fsdd.dataset("train").tensors[0][:, 0, :4, 0].tolist()}
    assert all(tuple(r) in train_rows for r in forget.tensors[0][:, 0, :4, 0].tolist())
    assert abs(float(fsdd.dataset("train").tensors[0].mean())) < 1e-3  # normalised on train


def test_fsdd_digit_label_and_same_split_twice(shared_data, feature_cache, fsdd):
    digits = FSDDDataModule(shared_data / "fsdd", cache_dir=feature_cache, label="digit")
    digits.setup()
    assert digits.class_names == [str(d) for d in range(10)]
    again = FSDDDataModule(shared_data / "fsdd", cache_dir=feature_cache)
    again.setup()
    assert again.split_fingerprint == fsdd.split_fingerprint
    other_seed = FSDDDataModule(shared_data / "fsdd", cache_dir=feature_cache, split_seed=1)
    other_seed.setup()
    assert other_seed.split_fingerprint != fsdd.split_fingerprint


def test_second_setup_reads_the_store_not_the_audio(shared_data, feature_cache, fsdd, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("audio decoded although the features are stored")

    monkeypatch.setattr("qpae.data.base.load_mono", no_decoding)
    dm = FSDDDataModule(shared_data / "fsdd", cache_dir=feature_cache)
    dm.setup()
    for split in ("train", "test"):
        assert torch.equal(dm.dataset(split).tensors[0], fsdd.dataset(split).tensors[0])


def test_librispeech_windows_never_straddle_splits(shared_data, feature_cache):
    dm = LibriSpeechDataModule(shared_data / "librispeech", cache_dir=feature_cache, max_windows=8)
    dm.setup()
    assert dm.num_classes == 10 and dm.class_names[0] == "1688"
    assert len(dm.targets) > 100  # 100 utterances, several 1 s windows each
    owners = {s: set(dm.recording_ids[dm.indices[s]].tolist()) for s in ("train", "val", "test")}
    assert not (owners["train"] & owners["test"] or owners["train"] & owners["val"])
    assert len(owners["test"]) == 20  # 2 of each speaker's 10 utterances


def test_speech_commands_speakers_and_words(shared_data, feature_cache):
    root = shared_data / "speech_commands_sample" / "speech_commands_v0.01"
    words = SpeechCommandsDataModule(root, cache_dir=feature_cache, label="word")
    words.setup()
    assert words.num_classes == 30 and "marvin" in words.class_names
    speakers = SpeechCommandsDataModule(root, cache_dir=feature_cache, max_classes=5, min_per_class=3)
    speakers.setup()
    assert speakers.num_classes == 5
    counts = torch.bincount(speakers.targets)
    recs = speakers._recordings()
    all_counts = sorted((sum(r.speaker == s for r in recs) for s in {r.speaker for r in recs}), reverse=True)
    assert sorted(counts.tolist(), reverse=True) == all_counts[:5]  # the 5 speakers with most clips


def test_audiomnist_sample_labels_from_names_and_meta(shared_data, feature_cache):
    root = shared_data / "audiomnist_sample"
    speakers = AudioMNISTDataModule(root, cache_dir=feature_cache)
    recs = speakers._recordings()
    assert [r.label for r in recs] == ["01", "02", "08", "42", "51", "56"]
    accents = AudioMNISTDataModule(root, cache_dir=feature_cache, label="accent", min_per_class=1)
    assert {r.label for r in accents._recordings()} >= {"german"}  # 'German' and 'german' merge
    digits = AudioMNISTDataModule(root, cache_dir=feature_cache, label="digit", min_per_class=1)
    stored = digits._stored()  # 48 kHz → 16 kHz
    assert len(stored["rows"]) == 6 and stored["shape"] == (1, 64, 101)
    [shard] = {row["shard"] for row in stored["rows"][:1]}
    assert stored["store"].features(shard).shape[1] == 64 * 101
    # one clip per digit cannot give train, val and test one each: no model without a test set
    with pytest.raises(ValueError, match="val and test split is empty"):
        digits.setup()


def test_accent_archive_from_mp3_fixture(tmp_path, feature_cache):
    (tmp_path / "recordings").mkdir()
    rows = []
    for lang, f0 in (("french", 110), ("german", 160), ("korean", 220)):
        for i in range(1, 4):
            name = f"{lang}{i}"
            sf.write(
                tmp_path / "recordings" / f"{name}.mp3",
                voice(2.5, 22_050, f0 + 7 * i, i),
                22_050,
                format="MP3",
            )
            rows.append({"filename": name, "native_language": lang.upper(), "file_missing?": "FALSE"})
    rows.append({"filename": "dutch1", "native_language": "dutch", "file_missing?": "TRUE"})
    with open(tmp_path / "speakers_all.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["filename", "native_language", "file_missing?"])
        writer.writeheader()
        writer.writerows(rows)
    dm = AccentArchiveDataModule(tmp_path, cache_dir=feature_cache, classes=["french", "german", "korean"])
    dm.setup()
    assert dm.class_names == ["french", "german", "korean"]
    assert len(dm.targets) == 9 * 2  # 2.5 s recordings → two 1 s windows each (tail < half dropped)
    with pytest.raises(ValueError, match="dutch"):
        AccentArchiveDataModule(tmp_path, cache_dir=feature_cache, classes=["dutch"]).setup()


def write_manifest(tmp_path, n_per_class=4, bad=()):
    rows = []
    for c, f0 in enumerate((120, 200, 300)):
        for i in range(n_per_class):
            path = tmp_path / f"c{c}_{i}.wav"
            sf.write(path, voice(0.7, 8_000, f0, 10 * c + i), 8_000)
            rows.append((path.name, f"class{c}", f"spk{c}"))
    for name, write in bad:
        write(tmp_path / name)
        rows.append((name, "class0", "spk0"))
    manifest = tmp_path / "list.csv"
    with open(manifest, "w", newline="") as fh:
        csv.writer(fh).writerows([("path", "label", "speaker"), *rows])
    return manifest


def test_manifest_loader(tmp_path, feature_cache):
    dm = ManifestDataModule(write_manifest(tmp_path), cache_dir=feature_cache)
    dm.setup()
    assert dm.class_names == ["class0", "class1", "class2"] and len(dm.targets) == 12


BAD = [
    ("corrupt.wav", lambda p: p.write_bytes(b"not audio at all")),
    ("empty.wav", lambda p: sf.write(p, np.zeros(0, np.float32), 8_000)),
    ("silent.wav", lambda p: sf.write(p, np.zeros(8_000, np.float32), 8_000)),
]


def test_bad_recordings_are_skipped_named_and_counted(tmp_path, caplog):
    manifest = write_manifest(tmp_path, n_per_class=20, bad=BAD)
    dm = ManifestDataModule(manifest, cache_dir=tmp_path / "cache", max_bad_fraction=0.1)
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert len(dm.targets) == 60
    text = caplog.text
    assert all(name in text for name, _ in BAD) and "skipped 3 of 63" in text
    # the count survives a cache hit
    caplog.clear()
    again = ManifestDataModule(manifest, cache_dir=tmp_path / "cache", max_bad_fraction=0.1)
    with caplog.at_level(logging.WARNING):
        again.setup()
    assert "skipped 3 of 63" in caplog.text


def test_too_many_bad_recordings_fail(tmp_path):
    manifest = write_manifest(tmp_path, n_per_class=3, bad=BAD)
    with pytest.raises(DataQualityError, match="3 of 12 recordings unusable"):
        ManifestDataModule(manifest, cache_dir=tmp_path / "cache", max_bad_fraction=0.1).setup()


def test_missing_or_empty_data_dir_says_where_to_put_what(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        FSDDDataModule(tmp_path / "nowhere").setup()
    msg = str(err.value)
    assert "recordings/<digit>_<speaker>_<rep>.wav" in msg and "dataset.data_dir" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="data/<NN>/<digit>_<NN>_<rep>.wav"):
        AudioMNISTDataModule(tmp_path / "empty").setup()
    with pytest.raises(DatasetNotFoundError, match="Kaggle"):
        AccentArchiveDataModule(tmp_path / "empty").setup()
    with pytest.raises(DatasetNotFoundError, match="No manifest file"):
        ManifestDataModule(tmp_path / "none.csv").setup()


def test_failed_download_says_where_to_put_what(tmp_path, monkeypatch):
    # a closed local port answers at once: the offline path, without touching the network
    monkeypatch.setattr(SpeechCommandsDataModule, "download_url", "http://127.0.0.1:9/sc.tar.gz")
    with pytest.raises(
        DatasetNotFoundError, match="Download from http://127.0.0.1:9/sc.tar.gz failed"
    ) as err:
        SpeechCommandsDataModule(tmp_path / "sc", download=True).setup()
    assert "<word>/<speakerhash>_nohash_<n>.wav" in str(err.value)


def test_bad_labels_and_names():
    with pytest.raises(ValueError, match="'speaker' or 'digit'"):
        FSDDDataModule("x", label="accent")
    with pytest.raises(ValueError, match="one of"):
        AudioMNISTDataModule("x", label="age")


def test_a_whole_corpus_cache_from_before_the_store_is_refused_with_the_command_that_removes_it(tmp_path):
    manifest = write_manifest(tmp_path)
    old = tmp_path / "cache" / "manifest-0123456789abcdef0123.pt"
    old.parent.mkdir()
    old.write_bytes(b"every speaker's features")
    (tmp_path / "cache" / "other-0123456789abcdef0123.pt").write_bytes(b"another dataset's")
    with pytest.raises(
        legacy_cache.LegacyCacheError, match="qpae-store dataset=manifest store.action=migrate"
    ):
        ManifestDataModule(manifest, cache_dir=tmp_path / "cache").setup()
    assert legacy_cache.remove(tmp_path / "cache", "manifest") == [old.name]
    ManifestDataModule(manifest, cache_dir=tmp_path / "cache").setup()
    assert (tmp_path / "cache" / "other-0123456789abcdef0123.pt").exists()
