"""Forgetting a person in verification mode: one qpae-unlearn request edits the enrolment store
and the cohort (hashes in the receipt) and re-enrols the others with the new encoder; the stores'
edits are planned and checked before any work, and a refused request modifies nothing."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from qpae.pipeline.enrol import run_enrol
from qpae.pipeline.unlearn import unlearn
from qpae.unlearning.receipt import verify_receipt
from qpae.verification.enrolment import EnrolmentError, EnrolmentStore
from qpae.verification.erasure import apply_store_edits, plan_store_edits

from conftest import SYNTHETIC_8, compose_config

FAST = ["unlearn.epochs=1", "unlearn.lr=3e-4"]


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def store(names, meta=None, d=4, seed=0) -> EnrolmentStore:
    rng = np.random.default_rng(seed)
    prints = rng.standard_normal((len(names), d)).astype(np.float32)
    return EnrolmentStore(
        tuple(names), prints / np.linalg.norm(prints, axis=1, keepdims=True), (3,) * len(names), meta or {}
    )


def test_a_person_not_enrolled_is_refused_and_nothing_is_modified(tmp_path):
    enrolment, cohort = tmp_path / "enrolment.npz", tmp_path / "cohort.npz"
    store(["a", "b", "c"]).save(enrolment)
    store(["x", "y"]).save(cohort)
    before = sha(enrolment), sha(cohort)
    with pytest.raises(EnrolmentError, match=r"\['zed'\].*not enrolled"):
        plan_store_edits(["a", "zed"], enrolment, cohort)
    with pytest.raises(EnrolmentError, match="same file"):
        plan_store_edits(["a"], enrolment, enrolment)
    with pytest.raises(FileNotFoundError, match="qpae-enrol"):
        plan_store_edits(["a"], tmp_path / "none.npz")
    assert (sha(enrolment), sha(cohort)) == before


def test_stores_of_another_dataset_or_encoder_are_refused(tmp_path):
    path = tmp_path / "enrolment.npz"
    store(["a", "b"], {"dataset": "fsdd", "encoder_sha256": "1" * 64}).save(path)
    with pytest.raises(EnrolmentError, match="made for fsdd"):
        plan_store_edits(["a"], path, dataset="librispeech")
    with pytest.raises(EnrolmentError, match="another model's"):
        plan_store_edits(["a"], path, dataset="fsdd", encoder_sha256="2" * 64)


def test_edits_write_whole_stores_and_return_their_hashes(tmp_path):
    enrolment, cohort = tmp_path / "enrolment.npz", tmp_path / "cohort.npz"
    store(["a", "b", "c"]).save(enrolment)
    store(["a", "y", "z"]).save(cohort)  # a cohort may hold the person too: they leave it as well
    edits = plan_store_edits(["a"], enrolment, cohort)
    records = apply_store_edits(edits)
    assert [r["removed"] for r in records] == [["a"], ["a"]]
    assert [r["sha256_after"] for r in records] == [sha(enrolment), sha(cohort)]
    assert EnrolmentStore.load(enrolment).names == ("b", "c")
    assert EnrolmentStore.load(cohort).names == ("y", "z")


def test_a_store_changed_since_planning_is_left_alone(tmp_path):
    path = tmp_path / "enrolment.npz"
    store(["a", "b", "c"]).save(path)
    edits = plan_store_edits(["a"], path)
    store(["a", "b", "c", "d"]).save(path)  # someone enrolled d meanwhile
    changed = sha(path)
    with pytest.raises(EnrolmentError, match="changed since"):
        apply_store_edits(edits)
    assert sha(path) == changed


def enrol(tmp_path, base, original, *extra):
    data_only = [o for o in base if not o.startswith(("logger=", "trainer."))]  # qpae-enrol trains nothing
    cfg = compose_config(
        "enrol", [*data_only, f"input={original}", "cohort=[spk06,spk07]", *extra], tmp_path / "stores"
    )
    run_enrol(cfg)
    return tmp_path / "stores" / "run" / "enrolment.npz", tmp_path / "stores" / "run" / "cohort.npz"


@pytest.fixture
def base(feature_cache, synthetic_root):
    return [f"paths.cache={feature_cache}", f"paths.data={synthetic_root}", *SYNTHETIC_8]


def test_one_request_forgets_a_speaker_from_the_encoder_the_store_and_the_cohort(tmp_path, base, pretrained):
    enrolment, cohort = enrol(tmp_path, base, pretrained)
    assert set(EnrolmentStore.load(enrolment).names) == {f"spk0{i}" for i in range(6)}
    before = sha(enrolment), sha(cohort)
    cfg = compose_config(
        "unlearn",
        [
            *base,
            f"input={pretrained}",
            *FAST,
            "forget=[spk01]",
            f"verification.enrolment={enrolment}",
            f"verification.cohort={cohort}",
        ],
        tmp_path,
    )
    unlearn(cfg)
    out = tmp_path / "run" / "request-01"
    receipt = json.loads((out / "receipt.json").read_text())
    entry = receipt["verification"]
    assert entry["status"] == "done" and entry["encoder_sha256"] == sha(out / "model.pt")
    by_kind = {r["kind"]: r for r in entry["stores"]}
    assert by_kind["enrolment"]["removed"] == ["spk01"] and by_kind["cohort"]["removed"] == []
    assert (by_kind["enrolment"]["sha256_before"], by_kind["cohort"]["sha256_before"]) == before
    assert (by_kind["enrolment"]["sha256_after"], by_kind["cohort"]["sha256_after"]) == (
        sha(enrolment),
        sha(cohort),
    )
    after = EnrolmentStore.load(enrolment)
    assert "spk01" not in after.names and len(after.names) == 5
    assert after.meta["encoder_sha256"] == sha(
        out / "model.pt"
    )  # the others, re-enrolled with the new encoder
    assert verify_receipt(out / "receipt.json", out / "model.pt").ok


def test_a_request_for_someone_not_enrolled_fails_before_training(tmp_path, base, pretrained):
    enrolment, cohort = enrol(tmp_path, base, pretrained, "enrolled=[spk00,spk02]")
    before = sha(enrolment), sha(cohort)
    cfg = compose_config(
        "unlearn",
        [*base, f"input={pretrained}", *FAST, "forget=[spk01]", f"verification.enrolment={enrolment}"],
        tmp_path,
    )
    with pytest.raises(EnrolmentError, match="not enrolled"):
        unlearn(cfg)
    assert not (tmp_path / "run" / "request-01").exists()
    assert (sha(enrolment), sha(cohort)) == before


def test_store_only_removal_and_bad_enrolment_input(tmp_path, base, pretrained):
    enrolment, cohort = enrol(tmp_path, base, pretrained)
    cfg = compose_config(
        "enrol",
        [
            "action=remove",
            "forget=[spk03]",
            f"verification.enrolment={enrolment}",
            f"verification.cohort={cohort}",
        ],
        tmp_path / "remove",
    )
    record = run_enrol(cfg)
    assert record["stores"][0]["removed"] == ["spk03"] and "spk03" not in EnrolmentStore.load(enrolment).names
    assert json.loads((tmp_path / "remove" / "run" / "receipt.json").read_text())["forgotten"] == ["spk03"]
    with pytest.raises(EnrolmentError, match="at least two"):
        enrol(tmp_path / "one", base, pretrained, "cohort=[spk06]")
    with pytest.raises(EnrolmentError, match="below min_clips"):
        enrol(tmp_path / "few", base, pretrained, "enrol_clips=2")
    with pytest.raises(EnrolmentError, match="not classes"):
        enrol(tmp_path / "who", base, pretrained, "enrolled=[nobody]")
