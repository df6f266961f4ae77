"""The worker with real unlearning runs: two requests in sequence on a deployment that purges
each erased speaker's features, each purge a record of the receipt chain."""

from __future__ import annotations

import shutil

import hydra
import pytest

from qpae.checkpoints import build_net, read_model, save_model
from qpae.pipeline.config import compose
from qpae.service.service import ErasureService
from qpae.service.worker import Worker

from conftest import SYNTHETIC_8


@pytest.mark.slow
def test_sequential_erasures_with_purge_after_each(tmp_path, feature_cache, synthetic_root, pretrained):
    # a copy of the session's store (and a model naming it), so that the purge reaches no other test
    cache = tmp_path / "cache"
    shutil.copytree(feature_cache / "store", cache / "store")
    model = read_model(pretrained)
    meta = {
        **model.meta,
        "training_artifacts": {**model.meta.get("training_artifacts", {}), "feature_cache": str(cache)},
    }
    net = build_net(meta)
    net.load_state_dict(model.state_dict)
    original = tmp_path / "original.pt"
    save_model(original, net, meta)
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
