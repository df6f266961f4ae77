import pytest

from qpae.data.splits import stratified_split


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
