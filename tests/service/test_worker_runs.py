"""The worker with real unlearning runs: two requests in sequence on a deployment that purges
each erased speaker's features, each purge a record of the receipt chain."""

from __future__ import annotations

import json

import hydra
import pytest

from qpae.pipeline.config import compose
from qpae.service.service import ErasureService
from qpae.service.worker import Worker

from conftest import SYNTHETIC_8, store_copy


@pytest.mark.slow
def test_sequential_erasures_with_purge_after_each(tmp_path, feature_cache, synthetic_root, pretrained):
    cache, original = store_copy(tmp_path, feature_cache, pretrained)
    run = [
        f"paths.cache={cache}",
        f"paths.data={synthetic_root}",
        *SYNTHETIC_8,
        "schedule=paper",
        "unlearn.epochs=2",
    ]

    service = ErasureService(tmp_path / "service", create=True)
    service.init("default", original, run, "qpae", True)
    first, second = service.submit("default", ["spk01"]), service.submit("default", ["spk06"])
    assert Worker(service, "default").run() == [first.id, second.id]

    first, second = service.ledger.request(first.id), service.ledger.request(second.id)
    assert (first.status, first.purge, second.status, second.purge) == ("erased", "done", "erased", "done"), (
        first.error,
        second.error,
    )
    current = service.ledger.current("default")
    assert current.kind == "erased" and current.forgotten == ("spk01", "spk06")
    assert current.metrics["after"]["FA"] < 50  # measured on the forget classes' test clips
    store = hydra.utils.instantiate(compose("unlearn", run).dataset).store()
    assert {"spk01", "spk06"} <= set(store.purged())
    purges = [r for r in service.ledger.chain() if r["kind"] == "purge"]
    assert [r["request_id"] for r in purges] == [first.id, second.id]
    assert service.chain_problem() is None
    assert not any(service.registry.work.iterdir())  # work folders are discarded once registered


@pytest.mark.slow
def test_each_erasure_of_a_sequence_is_certified_before_its_purge(
    tmp_path, feature_cache, synthetic_root, pretrained
):
    cache, original = store_copy(tmp_path, feature_cache, pretrained)
    run = [
        f"paths.cache={cache}",
        f"paths.data={synthetic_root}",
        *SYNTHETIC_8,
        "schedule=paper",
        "unlearn.epochs=2",
    ]
    certify = ["certify.n=6", "certify.launcher=basic", "certify.retrain.epochs=2"]
    service = ErasureService(tmp_path / "service", create=True)
    service.init("default", original, run, "qpae", True, certify)
    first, second = service.submit("default", ["spk01"]), service.submit("default", ["spk06"])
    assert Worker(service, "default").run() == [first.id, second.id]
    for request in (first, second):
        request = service.ledger.request(request.id)
        assert (request.status, request.certificate, request.purge) == ("erased", "done", "done")
        summary = service.ledger.version(request.erased_version).certificate
        assert summary["n"] == 6 and isinstance(summary["valid"], bool)
    records = [r for r in service.ledger.chain() if r["kind"] in ("certificate", "purge")]
    # each certificate comes before its purge: it needs the speaker's clips
    assert [(r["kind"], r["request_id"]) for r in records] == [
        ("certificate", first.id),
        ("purge", first.id),
        ("certificate", second.id),
        ("purge", second.id),
    ]
    second_certificate = service.receipt(
        service.ledger.version(service.ledger.request(second.id).erased_version)
    )
    assert second_certificate["kind"] == "erased"
    body = json.loads(service.registry.read_record(records[2]["seq"]))["certificate"]
    assert body["forget_class_names"] == ["spk06"]  # the second step: ε on its own speaker's clips
    assert service.chain_problem() is None
