"""The enrolment store (atomic edits, hashes, bad input) and the trial lists and scores."""

from __future__ import annotations

import numpy as np
import pytest

import qpae.verification.enrolment as enrolment_mod
from qpae.verification.enrolment import EnrolmentError, EnrolmentStore, remove_speakers
from qpae.verification.trials import as_norm, check_trials, cosine_scores, make_trials


def clips(speakers=("ann", "bob", "cy"), per=4, dim=8, seed=0):
    """Embeddings clustered per speaker: a direction each, plus a little noise."""
    rng = np.random.default_rng(seed)
    centres = {s: rng.standard_normal(dim) for s in speakers}
    names = [s for s in speakers for _ in range(per)]
    emb = np.stack([centres[s] + 0.1 * rng.standard_normal(dim) for s in names])
    return emb, names


def test_enrolment_makes_one_unit_voiceprint_per_person():
    emb, names = clips()
    store = EnrolmentStore.enrol(emb, names, min_clips=3)
    assert store.names == ("ann", "bob", "cy") and store.clips == (4, 4, 4)
    np.testing.assert_allclose(np.linalg.norm(store.voiceprints, axis=1), 1.0, atol=1e-6)


def test_too_few_enrolment_clips_are_refused_naming_who():
    emb, names = clips(per=2)
    with pytest.raises(EnrolmentError, match="at least 3 clips.*'ann': 2"):
        EnrolmentStore.enrol(emb, names, min_clips=3)


def test_removal_is_atomic_hashed_and_refuses_unknown_names(tmp_path, monkeypatch):
    emb, names = clips()
    path = tmp_path / "enrolment.npz"
    sha = EnrolmentStore.enrol(emb, names).save(path)
    before = path.read_bytes()
    with pytest.raises(EnrolmentError, match="not enrolled"):
        remove_speakers(path, ["dan"])
    assert path.read_bytes() == before  # nothing modified

    def failing_write(target, data):
        raise OSError("disk full")

    monkeypatch.setattr(enrolment_mod, "write_atomic", failing_write)
    with pytest.raises(OSError, match="disk full"):
        remove_speakers(path, ["bob"])
    assert path.read_bytes() == before  # the old store, whole
    monkeypatch.undo()
    record = remove_speakers(path, ["bob"])
    assert record["sha256_before"] == sha and record["sha256_after"] != sha
    assert record["removed"] == ["bob"] and record["enrolled_after"] == 2
    after = EnrolmentStore.load(path)
    assert after.names == ("ann", "cy") and after.sha256() == record["sha256_after"]
    assert not list(tmp_path.glob("*.tmp"))


def test_a_file_that_is_not_a_store_is_refused(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, names=np.asarray(["a"]))
    with pytest.raises(EnrolmentError, match="not a qpae enrolment store"):
        EnrolmentStore.load(path)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trial_lists_are_deterministic_and_complete(seed):
    speakers = ["ann", "bob", "cy", "ann", "eve", "bob"]  # eve is never enrolled
    a = make_trials(speakers, ["bob", "ann", "cy"], nontarget_per_clip=2, seed=seed)
    b = make_trials(speakers, ["cy", "ann", "bob"], nontarget_per_clip=2, seed=seed)
    assert a.enrolled == b.enrolled and np.array_equal(a.clip, b.clip) and np.array_equal(a.target, b.target)
    assert a.counts() == {"target_trials": 5, "nontarget_trials": 12}
    for name, clip, target in zip(a.enrolled, a.clip, a.target, strict=True):
        assert target == (speakers[clip] == name)  # a target trial is the clip's own speaker


def test_a_trial_list_naming_an_unknown_person_is_refused():
    emb, names = clips()
    store = EnrolmentStore.enrol(emb, names)
    trials = make_trials(["ann", "bob", "dan"], ["ann", "bob", "dan"], nontarget_per_clip=1)
    with pytest.raises(EnrolmentError, match="not enrolled: \\['dan'\\]"):
        check_trials(trials, store, 3)


def test_cosine_scores_separate_targets_and_as_norm_keeps_the_order():
    emb, names = clips(per=6)
    store = EnrolmentStore.enrol(emb[::2], names[::2])
    test_emb, test_names = emb[1::2], names[1::2]
    trials = make_trials(test_names, store.names, nontarget_per_clip=2)
    scores = cosine_scores(store, test_emb, trials)
    assert scores[trials.target].min() > scores[~trials.target].max()
    # with one shared cohort row per trial, AS-norm is a monotone map: the order is kept
    cohort = np.tile(np.linspace(-0.5, 0.5, 10), (len(trials), 1))
    normed = as_norm(scores, cohort, cohort, top_k=5)
    assert np.array_equal(np.argsort(normed), np.argsort(scores))


def test_as_norm_by_hand():
    # cohort top-2 of [0, 1, 3] = [3, 1]: mean 2, std 1 -> (s - 2) / 1 on both sides
    out = as_norm(np.array([4.0]), np.array([[0.0, 1.0, 3.0]]), np.array([[0.0, 1.0, 3.0]]), top_k=2)
    assert out[0] == pytest.approx(2.0)
