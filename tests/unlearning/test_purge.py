"""Erasure reaches the data: qpae-unlearn purges the forgotten speaker's features from the store."""

from __future__ import annotations

import json

import hydra
import pytest

from qpae.checkpoints import read_model
from qpae.data.store import PurgedError
from qpae.pipeline.audit import run_audit
from qpae.pipeline.config import compose
from qpae.pipeline.store import run as store_run
from qpae.pipeline.unlearn import unlearn
from qpae.unlearning.receipt import verify_receipt

from conftest import SYNTHETIC_8, compose_config, store_copy

FAST = ["unlearn.epochs=2", "unlearn.lr=3e-4"]


@pytest.fixture
def own_store(tmp_path, feature_cache, synthetic_root, pretrained):
    """A copy of the session's store and of the pretrained model that names it as its cache: a
    purge here never reaches the store every other test reads."""
    cache, original = store_copy(tmp_path, feature_cache, pretrained)
    base = [f"paths.cache={cache}", f"paths.data={synthetic_root}", *SYNTHETIC_8]
    return cache, original, base


def test_unlearning_a_speaker_purges_their_features_and_the_receipt_lists_the_shards(tmp_path, own_store):
    cache, original, base = own_store
    store = hydra.utils.instantiate(compose("unlearn", base).dataset).store()
    theirs = store.shards("spk00")
    assert theirs
    # an evaluation copy, kept before the purge (guarded by its owner)
    copy = store_run(
        compose("store", [*base[:2], *SYNTHETIC_8[:4], "store.action=copy", f"store.to={tmp_path / 'eval'}"])
    )
    assert copy["to"].startswith(str(tmp_path / "eval"))

    # purge=null, unlearn.yaml's default (the tests' configs say purge=false unless told)
    cfg = compose_config(
        "unlearn", [*base, f"input={original}", *FAST, "forget=[spk00]", "purge=null"], tmp_path
    )
    unlearn(cfg)
    out = tmp_path / "run" / "request-01"
    receipt = json.loads((out / "receipt.json").read_text())
    [entry] = receipt["purge"]["stores"]
    assert receipt["purge"]["speakers"] == ["spk00"] and receipt["purge"]["status"] == "done"
    assert {p["shard"]: p["sha256"] for p in entry["purged"][0]["shards"]} == {
        name: info["sha256"] for name, info in theirs.items()
    }
    assert verify_receipt(out / "receipt.json", out / "model.pt").ok  # rewritten whole, still matched
    assert not any((store.shard_dir / name).exists() for name in theirs)
    assert "spk00" not in {r["speaker"] for r in store.recordings(None)}

    # the audit needs spk00's clips: refused, naming the evaluation copy
    audit = compose_config(
        "audit",
        [
            *base[:2],
            *SYNTHETIC_8[:5],
            f"original={original}",
            f"+unlearned.qpae={out / 'model.pt'}",
            "forget=[spk00]",
        ],
        tmp_path,
    )
    with pytest.raises(PurgedError, match="spk00.*evaluation copy"):
        run_audit(audit)
    # the evaluation copy still holds them, and the split is the one the models were trained on
    data = compose("unlearn", [*base, f"dataset.cache_dir={tmp_path / 'eval'}"]).dataset
    dm = hydra.utils.instantiate(data)
    dm.setup()
    dm.require_data([0], "the audit")
    assert len(dm.forget_set([0])) > 0
    assert dm.split_fingerprint == read_model(original).meta["data"]["split_fingerprint"]


def test_a_run_stopped_before_its_purge_leaves_a_receipt_that_says_it_is_pending(
    tmp_path, own_store, monkeypatch
):
    cache, original, base = own_store

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process stops after publishing, before deleting

    monkeypatch.setattr("qpae.pipeline.unlearn.purge_forgotten", killed)
    cfg = compose_config(
        "unlearn", [*base, f"input={original}", *FAST, "forget=[spk00]", "purge=true"], tmp_path
    )
    with pytest.raises(KeyboardInterrupt):
        unlearn(cfg)
    out = tmp_path / "run" / "request-01"
    receipt = json.loads((out / "receipt.json").read_text())
    assert receipt["purge"]["status"] == "pending" and receipt["purge"]["speakers"] == ["spk00"]
    assert "store.action=purge" in receipt["purge"]["how_to_finish"]
    verdict = verify_receipt(out / "receipt.json", out / "model.pt")
    assert verdict.ok and "purge is pending" in verdict.reason


def test_purge_refuses_a_dataset_whose_classes_are_not_speakers_before_training(tmp_path, own_store):
    cache, original, base = own_store
    cfg = compose_config(
        "unlearn", [*base, f"input={original}", *FAST, "forget=[spk00]", "purge=maybe"], tmp_path
    )
    with pytest.raises(ValueError, match="purge must be true, false or null"):
        unlearn(cfg)


def test_store_purge_takes_names_never_indices(tmp_path, own_store):
    cache, _, base = own_store
    for bad in ("store.speakers=[0]", "store.speakers=spk00", "store.speakers=[]"):
        with pytest.raises(ValueError, match="list of speaker names"):
            store_run(compose("store", [*base[:2], *SYNTHETIC_8[:4], "store.action=purge", bad]))
    with pytest.raises(Exception, match="no feature store of synthetic_speakers"):
        store_run(
            compose("store", [*base[:2], *SYNTHETIC_8[:4], "store.action=purge", "store.speakers=[nobody]"])
        )
