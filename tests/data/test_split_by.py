"""What a DataModule's split keeps apart (split_by), and which seed drives what."""

import pytest
import soundfile as sf
import torch
from audio_samples import voice, write_csv, write_speakers

from qpae.data.fsdd import FSDDDataModule
from qpae.data.manifest import ManifestDataModule

SPLITS = ("train", "val", "test")


def speakers_by_split(dm):
    return {s: {dm.speakers[r] for r in dm.recording_ids[dm.indices[s]].tolist()} for s in SPLITS}


def assert_disjoint(parts):
    train, val, test = (parts[s] for s in SPLITS)
    assert train and val and test and not (train & val or train & test or val & test), parts


def test_fsdd_digits_are_split_by_speaker(shared_data, feature_cache):
    dm = FSDDDataModule(shared_data / "fsdd", cache_dir=feature_cache, label="digit")
    dm.setup()
    assert dm.split.method == "speaker" and dm.describe()["split_by"] == "speaker"
    parts = speakers_by_split(dm)
    assert_disjoint(parts)
    assert [len(parts[s]) for s in SPLITS] == [4, 1, 1]  # 6 speakers
    assert torch.bincount(dm.targets[dm.indices["test"]]).tolist() == [50] * 10  # every digit tested


def accent_manifest(root, speakers_per_accent=4, recordings=2):
    """Accent labels, several speakers per accent, several recordings per speaker."""
    accents = {a: [f"{a}_{i}" for i in range(speakers_per_accent)] for a in ("french", "german", "korean")}
    rows = []
    for rep in range(recordings):
        for path, label, speaker in write_speakers(root, accents):
            name = f"{rep}_{path}"
            sf.write(root / name, voice(0.6, 8_000, 90 + 11 * len(rows), len(rows)), 8_000)
            rows.append((name, label, speaker))
    return write_csv(root / "accents.csv", rows)


def test_accent_labels_are_split_by_speaker_and_split_by_is_recorded(tmp_path):
    manifest = accent_manifest(tmp_path)
    dm = ManifestDataModule(manifest, cache_dir=tmp_path / "cache")
    dm.setup()
    assert dm.split.method == "speaker" and dm.describe()["split_by"] == "speaker"
    assert_disjoint(speakers_by_split(dm))
    by_recording = ManifestDataModule(manifest, cache_dir=tmp_path / "cache", split_by="recording")
    by_recording.setup()
    assert by_recording.describe()["split_by"] == "recording"
    # a model trained with one split_by is refused on the other: the fingerprints differ
    assert by_recording.split_fingerprint != dm.split_fingerprint


def test_too_few_speakers_per_class_is_explained(tmp_path):
    manifest = write_csv(tmp_path / "m.csv", write_speakers(tmp_path, {"a": ["s1", "s2"], "b": ["s3", "s4"]}))
    with pytest.raises(ValueError, match=r"2 of 2 classes have fewer than min_per_class=3 speakers") as err:
        ManifestDataModule(manifest, cache_dir=tmp_path / "cache").setup()
    assert "the most any class has is 2" in str(err.value)
    with pytest.raises(ValueError, match=r"at least 3 speakers per class; 2 of 2 classes have fewer") as err:
        ManifestDataModule(manifest, cache_dir=tmp_path / "cache", min_per_class=1).setup()
    assert "split_by=recording" in str(err.value)


@pytest.fixture(scope="module")
def one_utterance_per_speaker(shared_data, tmp_path_factory):
    """LibriSpeech with one utterance (≥ 5 s) per speaker, as many corpora ship: a manifest only."""
    rows = []
    for speaker in sorted((shared_data / "librispeech" / "LibriSpeech" / "test-other").iterdir()):
        flac = next(p for p in sorted(speaker.glob("*/*.flac")) if sf.info(p).duration >= 5)
        rows.append((str(flac), speaker.name, speaker.name))
    return write_csv(tmp_path_factory.mktemp("one-utterance") / "m.csv", rows)


def test_one_recording_per_class_explains_and_offers_window_split(one_utterance_per_speaker, feature_cache):
    kwargs = {"cache_dir": feature_cache, "window": True, "max_windows": 8}
    with pytest.raises(ValueError, match="need at least 2 classes, found 0") as err:
        ManifestDataModule(one_utterance_per_speaker, **kwargs).setup()
    msg = str(err.value)
    assert "10 of 10 classes have fewer than min_per_class=3 recordings" in msg
    assert "the most any class has is 1" in msg and "split_by=window" in msg
    with pytest.raises(ValueError, match="the val and test split is empty .* split_by=window"):
        ManifestDataModule(one_utterance_per_speaker, min_per_class=1, **kwargs).setup()
    with pytest.raises(ValueError, match="needs window=true"):
        ManifestDataModule(one_utterance_per_speaker, split_by="window")

    dm = ManifestDataModule(one_utterance_per_speaker, split_by="window", **kwargs)
    dm.setup()
    assert dm.num_classes == 10 and dm.describe()["split_by"] == "window"
    part = torch.empty(len(dm.targets), dtype=torch.long)
    for p, s in enumerate(SPLITS):
        part[dm.indices[s]] = p
    for r in range(10):  # each recording: its first windows train, then val, then test
        order = part[dm.recording_ids == r].tolist()
        assert order == sorted(order) and set(order) == {0, 1, 2}, order


def small_manifest(root):
    rows = [(f"c{c}_{i}.wav", f"c{c}", f"s{c}") for c in range(3) for i in range(20)]
    for i, (name, *_) in enumerate(rows):
        sf.write(root / name, voice(0.4, 8_000, 120 + 7 * i, i), 8_000)
    return write_csv(root / "m.csv", rows)


def test_order_seed_changes_batches_and_subsample_not_the_split(tmp_path):
    manifest = small_manifest(tmp_path)

    def setup(**seeds):
        dm = ManifestDataModule(manifest, cache_dir=tmp_path / "cache", batch_size=8, **seeds)
        dm.setup()
        return dm

    a, b = setup(order_seed=0), setup(order_seed=1)
    assert a.split_fingerprint == b.split_fingerprint
    first = [next(iter(dm.train_dataloader()))[1].tolist() for dm in (a, b)]
    assert first[0] != first[1]
    assert first[0] == next(iter(setup(order_seed=0).train_dataloader()))[1].tolist()  # seeded
    subsample = [list(dm.unlearning_loader([0], retain_fraction=0.3).sampler) for dm in (a, b)]
    assert sorted(subsample[0]) != sorted(subsample[1])
    assert setup(split_seed=1).split_fingerprint != a.split_fingerprint
    assert setup(split_seed=1, order_seed=5).split_fingerprint == setup(split_seed=1).split_fingerprint


def test_the_old_seed_argument_is_refused():
    with pytest.raises(TypeError, match="seed"):
        ManifestDataModule("m.csv", seed=0)
