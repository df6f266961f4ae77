import pytest

from qpae.data.splits import Split, resolve_split_by, speaker_split, stratified_split, time_split


def test_split_is_stratified_disjoint_and_seeded():
    labels = [0] * 50 + [1] * 30 + [2] * 5
    split = stratified_split(labels, 0.1, 0.2, seed=3)
    parts = [set(split.train), set(split.val), set(split.test)]
    assert sum(map(len, parts)) == len(labels) and set.union(*parts) == set(range(len(labels)))
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    per_class_test = [sum(labels[i] == c for i in split.test) for c in (0, 1, 2)]
    assert per_class_test == [10, 6, 1]
    assert stratified_split(labels, 0.1, 0.2, seed=3) == split
    assert stratified_split(labels, 0.1, 0.2, seed=4) != split


def test_tiny_classes_stay_in_train():
    split = stratified_split([0, 0, 1, 1, 1], 0.1, 0.2, seed=0)
    assert {0, 1} <= set(split.train) and len(split.test) == 1 and len(split.val) == 1


def test_fingerprint_changes_with_membership():
    ids = [f"r{i}" for i in range(10)]
    a = stratified_split([0] * 5 + [1] * 5, 0.2, 0.2, seed=0)
    b = stratified_split([0] * 5 + [1] * 5, 0.2, 0.2, seed=1)
    assert a.fingerprint(ids) == a.fingerprint(ids) != b.fingerprint(ids)


def test_bad_fractions():
    with pytest.raises(ValueError, match="fractions"):
        stratified_split([0, 1], 0.6, 0.5, seed=0)


def test_fingerprint_names_the_split_method():
    ids = ["a", "b", "c"]
    assert Split((0,), (1,), (2,), "recording").fingerprint(ids) != Split(
        (0,), (1,), (2,), "speaker"
    ).fingerprint(ids)


def speakers_of(split, speakers):
    return [{speakers[i] for i in part} for part in (split.train, split.val, split.test)]


def test_speaker_split_keeps_each_speaker_in_one_part_and_every_class_in_each():
    # 8 accents x 4 speakers x 3 recordings: each speaker has one accent
    labels = [a for a in range(8) for _ in range(12)]
    speakers = [f"{a}_{i // 3}" for a in range(8) for i in range(12)]
    split = speaker_split(labels, speakers, 0.1, 0.2, seed=0)
    train, val, test = speakers_of(split, speakers)
    assert not (train & val or train & test or val & test)
    assert len(split.train) + len(split.val) + len(split.test) == len(labels)
    for part in (split.train, split.val, split.test):
        assert {labels[i] for i in part} == set(range(8))
    # with 4 speakers per class a part cannot hold 10%: 2 train / 1 val / 1 test speakers per class
    assert (len(train), len(val), len(test)) == (16, 8, 8)
    assert speaker_split(labels, speakers, 0.1, 0.2, seed=0) == split
    assert speaker_split(labels, speakers, 0.1, 0.2, seed=1) != split


def test_speaker_split_when_speakers_span_classes():
    # FSDD with digit labels: 6 speakers, each says every digit
    labels = [d for _ in range(6) for d in range(10) for _ in range(5)]
    speakers = [s for s in range(6) for _ in range(50)]
    split = speaker_split(labels, speakers, 0.1, 0.2, seed=0)
    train, val, test = speakers_of(split, speakers)
    assert (len(train), len(val), len(test)) == (4, 1, 1) and not (train & val or train & test or val & test)


def test_speaker_split_with_too_few_speakers_names_counts_and_option():
    labels, speakers = [0, 0, 0, 1, 1, 1], ["a", "b", "c", "d", "e", "d"]
    with pytest.raises(
        ValueError, match=r"1 of 2 classes have fewer \(class index: speakers = \{1: 2\}\)"
    ) as err:
        speaker_split(labels, speakers, 0.1, 0.2, seed=0)
    assert "split_by=recording" in str(err.value)


def test_time_split_cuts_each_recording_into_blocks_in_time():
    owners = [0] * 10 + [1] * 2 + [2] * 3
    split = time_split(owners, 0.1, 0.2)
    assert split.method == "window"
    assert split.train == (0, 1, 2, 3, 4, 5, 6, 10, 11, 12)  # recording 1: too short to split, all train
    assert split.val == (7, 13) and split.test == (8, 9, 14)


def test_resolve_split_by():
    assert resolve_split_by("auto", ["a", "a", "b"], ["a", "a", "b"]) == "recording"  # label = speaker
    assert resolve_split_by("auto", ["c0", "c0", "c1"], ["s0", "s0", "s1"]) == "recording"  # renamed speakers
    assert resolve_split_by("auto", ["7", "7", "8"], ["theo", "lucas", "theo"]) == "speaker"
    assert resolve_split_by("auto", ["7", "7", "8"], ["theo", "", "theo"]) == "recording"  # no speakers
    assert resolve_split_by("window", ["7"], [""]) == "window"
    with pytest.raises(ValueError, match="1 have none"):
        resolve_split_by("speaker", ["7", "7"], ["theo", ""])
    with pytest.raises(ValueError, match="split_by must be one of"):
        resolve_split_by("utterance", ["7"], ["theo"])
