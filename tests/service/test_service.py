"""The ledger, registry and receipt chain: requests by name, instant masking, verify, rollback, and
the worker's bookkeeping (with an erasure that needs no training)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch

from qpae.checkpoints import build_net, json_bytes, model_bytes, read_model
from qpae.models.factory import classifier_head
from qpae.service.ledger import SCHEMA_VERSION, Ledger, LedgerError
from qpae.service.service import ErasureService, RefusedError
from qpae.service.worker import Worker


def settings(overrides: list[str]) -> dict[str, str]:
    """The last value of each key, as Hydra reads a command line (quoted paths unquoted)."""
    out = {}
    for o in overrides:
        key, _, value = o.partition("=")
        if len(value) > 1 and value[0] == value[-1] == "'":
            value = value[1:-1].replace("\\'", "'").replace("\\${", "${")
        out[key] = value
    return out


def erase_without_training(overrides: list[str]) -> None:
    """What a run publishes (model.pt, receipt.json, metrics.json in request-01), without training:
    the parent's weights with the request's classes recorded as forgotten."""
    s = settings(overrides)
    parent = read_model(s["input"])
    names = parent.meta["data"]["class_names"]
    forget = json.loads(s["forget_index"])
    meta = {**parent.meta, "forgotten_classes": sorted({*parent.meta.get("forgotten_classes", []), *forget})}
    net = build_net(meta)
    net.load_state_dict(parent.state_dict)
    out = Path(s["output_dir"]) / "request-01"
    out.mkdir(parents=True)
    (out / "model.pt").write_bytes(model_bytes(net, meta))
    request = {"forget_classes": forget, "forget_class_names": [names[c] for c in forget]}
    (out / "receipt.json").write_bytes(json_bytes({"request": request}))
    (out / "metrics.json").write_bytes(json_bytes({"before": {"FA": 90.0}, "after": {"FA": 0.0}}))


@pytest.fixture
def service(tmp_path, pretrained) -> ErasureService:
    svc = ErasureService(tmp_path / "service", create=True)
    svc.init("default", pretrained, ["dataset=synthetic_speakers"], "qpae", False)
    return svc


@pytest.fixture
def fake_erase():
    return erase_without_training


def head_rows(path):
    model = read_model(path)
    net = build_net(model.meta)
    net.load_state_dict(model.state_dict)
    return classifier_head(net).weight.detach().clone()


def test_a_request_is_masked_at_once_in_a_new_current_version(service):
    original = service.ledger.current("default")
    request = service.submit("default", ["spk02"], requester="T-1")
    assert request.status == "queued" and request.class_names == ("spk02",) and request.class_indices == (2,)
    current = service.ledger.current("default")
    assert current.kind == "masked" and current.parent == original.sha256 and current.masked == ("spk02",)
    assert request.masked_version == current.sha256 and request.public()["seconds_to_masked"] >= 0
    before, after = (
        head_rows(service.registry.model_path(original.sha256)),
        head_rows(service.registry.model_path(current.sha256)),
    )
    assert torch.allclose(after[2], -before[2] / 2**0.5)  # phase 1 on spk02's row only
    keep = [k for k in range(before.shape[0]) if k != 2]
    assert torch.equal(after[keep], before[keep])
    receipt = service.receipt(current)
    assert receipt["kind"] == "masked" and "masked, not erased" in receipt["version"]["label"]
    assert receipt["request"]["speakers"] == ["spk02"] and receipt["previous_sha256"]


@pytest.mark.parametrize(
    ("speakers", "message"),
    [
        (["nobody"], "unknown class 'nobody'"),
        ([2], "speaker names are text"),
        (["2"], "unknown class '2'"),  # a number is a name, never the class at index 2
        ([], "at least one speaker"),
        ("spk01", "as a list of names"),
        (["spk01", "spk01"], "names the same class twice"),
        ([f"spk{k:02d}" for k in range(8)], "would forget every class"),
    ],
)
def test_bad_requests_are_refused_and_change_nothing(service, speakers, message):
    chain_before = service.ledger.chain()
    with pytest.raises(RefusedError, match=message):
        service.submit("default", speakers)
    assert service.ledger.requests() == [] and len(service.ledger.chain()) == len(chain_before)
    assert service.ledger.current("default").kind == "original"


def test_a_speaker_already_requested_or_forgotten_is_refused(service, fake_erase):
    service.submit("default", ["spk01"])
    with pytest.raises(RefusedError, match=r"'spk01' is already requested \(request 1, queued\)"):
        service.submit("default", ["spk01"])
    Worker(service, "default", erase=fake_erase).run()
    with pytest.raises(RefusedError, match="'spk01' is already forgotten"):
        service.submit("default", ["spk01"])
    with pytest.raises(LedgerError, match="no deployment 'other'"):
        service.submit("other", ["spk03"])


def test_the_worker_erases_in_order_and_keeps_later_requests_masked(service, fake_erase):
    first, second = service.submit("default", ["spk01"]), service.submit("default", ["spk03"])
    worker = Worker(service, "default", erase=fake_erase)
    assert worker.run(max_requests=1) == [first.id]
    first = service.ledger.request(first.id)
    erased = service.ledger.version(first.erased_version)
    assert first.status == "erased" and erased.kind == "erased" and erased.forgotten == ("spk01",)
    assert erased.parent == service.ledger.versions("default")[0].sha256  # from the original, not the mask
    current = service.ledger.current("default")  # spk03 still waits: masked on top of the erasure
    assert current.kind == "masked" and current.parent == erased.sha256 and current.masked == ("spk03",)
    assert worker.run() == [second.id]
    current = service.ledger.current("default")
    assert current.kind == "erased" and current.forgotten == ("spk01", "spk03")
    assert service.ledger.request(second.id).parent == erased.sha256  # sequential requests
    assert read_model(service.registry.model_path(current.sha256)).meta["forgotten_classes"] == [1, 3]
    assert service.chain_problem() is None
    kinds = [r["kind"] for r in service.ledger.chain()]
    assert kinds == ["original", "masked", "masked", "erased", "masked", "erased"]


def test_a_failed_erasure_is_recorded_and_its_speaker_stays_masked(service, fake_erase):
    request = service.submit("default", ["spk04"])

    def failing(overrides):
        raise ValueError("no convergence")

    Worker(service, "default", erase=failing).run()
    request = service.ledger.request(request.id)
    assert request.status == "failed" and request.error == "ValueError: no convergence"
    assert service.ledger.current("default").masked == ("spk04",)
    # asked again: accepted, erased, and never masked twice (that would flip the row back)
    again = service.submit("default", ["spk04"])
    assert again.masked_version == request.masked_version
    Worker(service, "default", erase=fake_erase).run()
    assert service.ledger.current("default").forgotten == ("spk04",)


def test_an_interrupted_request_is_rerun_once_from_its_parent(service, fake_erase):
    request = service.submit("default", ["spk05"])
    parent = service.ledger.versions("default")[0].sha256
    with service.change() as db:  # what a worker killed mid-run leaves
        Ledger.update_request(db, request.id, status="running", attempts=1, parent=parent)
    (service.registry.work / f"request-{request.id}-attempt-1" / "request-01").mkdir(parents=True)
    assert Worker(service, "default", erase=fake_erase).run() == [request.id]
    request = service.ledger.request(request.id)
    assert request.status == "erased" and request.attempts == 2 and request.parent == parent
    assert [e["kind"] for e in service.ledger.events("default")].count("erased") == 1
    assert [v.kind for v in service.ledger.versions("default")].count("erased") == 1


def test_verify_names_the_version_its_requests_and_a_tampered_receipt(
    service, tmp_path, pretrained, fake_erase
):
    service.submit("default", ["spk01"])
    Worker(service, "default", erase=fake_erase).run()
    service.submit("default", ["spk06"])
    current = service.ledger.current("default")
    verdict = service.verify(service.registry.model_path(current.sha256))
    assert verdict.ok and "(masked, current)" in verdict.reason
    assert "erases requests [1]" in verdict.reason and "masks (not erased) requests [2]" in verdict.reason
    stranger = tmp_path / "stranger.pt"
    stranger.write_bytes(b"not a model")
    verdict = service.verify(stranger)
    assert not verdict.ok and "is not a registered version" in verdict.reason
    # the file a deployment was started from is not one of its versions (the registry's copy
    # records the deployment's name), but verify says which deployment it started
    verdict = service.verify(pretrained)
    assert not verdict.ok and "deployment 'default' was started from it" in verdict.reason
    record = service.registry.record_path(3)
    record.write_text(record.read_text().replace("spk01", "spk07"))
    verdict = service.verify(service.registry.model_path(current.sha256))
    assert not verdict.ok and "record 3 (000003.json) was edited" in verdict.reason


def test_rollback_is_recorded_and_never_undoes_a_request(service, fake_erase):
    original = service.ledger.current("default")
    request = service.submit("default", ["spk01"])
    masked = service.ledger.current("default")
    Worker(service, "default", erase=fake_erase).run()
    erased = service.ledger.current("default")
    with pytest.raises(RefusedError, match=r"recognises \['spk01'\], who asked to be forgotten \(request 1"):
        service.rollback("default", original.sha256)
    assert service.ledger.current("default") == erased
    with pytest.raises(RefusedError, match="already current"):
        service.rollback("default", erased.sha256)
    with pytest.raises(RefusedError, match="no registered version"):
        service.rollback("default", "0123456789abcdef")
    with pytest.raises(RefusedError, match="at least 8"):
        service.rollback("default", "12")
    # back to the version that only masks spk01: allowed, and the request is erased again from
    # that version's base (it does not stay "erased" while only masked)
    assert service.rollback("default", masked.sha256[:12]) == masked  # a prefix names it
    assert service.ledger.current("default") == masked
    assert service.ledger.chain()[-1]["kind"] == "rollback"
    assert service.ledger.request(request.id).status == "queued"
    assert [e["kind"] for e in service.ledger.events("default")][-2:] == ["current", "requeued"]
    assert len(service.ledger.versions("default")) == 3  # nothing deleted
    Worker(service, "default", erase=fake_erase).run()
    assert service.ledger.request(request.id).status == "erased"
    assert service.ledger.current("default").forgotten == ("spk01",)
    # once a speaker's features are purged, a rollback to a mask of them is refused: they could
    # not be erased again
    with service.change() as db:
        Ledger.update_request(db, request.id, purge="done")
    with pytest.raises(RefusedError, match="whose features were purged"):
        service.rollback("default", masked.sha256)


def test_killed_changes_leave_no_registered_half_and_their_files_go(service):
    service.submit("default", ["spk01"])
    orphan_model = service.registry.models / ("ab" * 32 + ".pt")
    orphan_model.write_bytes(b"x")
    orphan_record = service.registry.record_path(99)
    orphan_record.write_text("{}")
    service.submit("default", ["spk02"])  # any change removes what a killed one left
    assert not orphan_model.exists() and not orphan_record.exists()
    assert service.chain_problem() is None


def test_a_ledger_of_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "ledger.sqlite"
    Ledger(path)
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(LedgerError, match="newer than this qpae's"):
        Ledger(path)


def test_a_deployment_starts_once_from_a_real_unmasked_model(service, tmp_path, pretrained):
    with pytest.raises(RefusedError, match="exists already"):
        service.init("default", pretrained, [], "qpae", None)
    with pytest.raises(RefusedError, match="deployment name"):
        service.init("../x", pretrained, [], "qpae", None)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable qpae model file"):
        service.init("other", junk, [], "qpae", None)
    service.submit("default", ["spk01"])
    masked = service.registry.model_path(service.ledger.current("default").sha256)
    with pytest.raises(RefusedError, match="is a masked version"):
        service.init("other", masked, [], "qpae", None)
    assert json.loads(service.ledger.deployment("default")["run_overrides"])["method"] == "qpae"


def test_the_cli_refuses_a_folder_without_a_ledger_and_creates_nothing(tmp_path, capsys):
    from qpae.cli.erase import main

    missing = tmp_path / "typo"
    assert main(["status", f"service.root={missing}"]) == 2
    assert "no ledger at" in capsys.readouterr().err and not missing.exists()


def test_the_cli_takes_settings_only_where_they_belong(tmp_path):
    from qpae.cli.erase import main

    with pytest.raises(SystemExit) as exit_info:  # argparse: usage error, status 2
        main(["submit", "spk01", "dataset=fsdd", f"service.root={tmp_path}"])
    assert exit_info.value.code == 2


def test_two_deployments_of_one_model_never_share_a_version(service, pretrained):
    staging = service.init("staging", pretrained, [], "qpae", False)
    assert staging.sha256 != service.ledger.versions("default")[0].sha256
    a, b = service.submit("default", ["spk01"]), service.submit("staging", ["spk01"])
    assert a.masked_version != b.masked_version
    assert service.ledger.version(b.masked_version).deployment == "staging"
    assert service.ledger.current("default").sha256 == a.masked_version


def test_init_with_settings_that_do_not_compose_creates_nothing(tmp_path, pretrained, capsys):
    from qpae.cli.erase import main

    root = tmp_path / "svc"
    assert main(["init", str(pretrained), "dataset=nosuch", f"service.root={root}"]) == 2
    assert "do not compose" in capsys.readouterr().err and not root.exists()
    assert main(["init", str(pretrained), "forget=[spk01]", f"service.root={root}"]) == 2
    assert "set by the service for each request" in capsys.readouterr().err and not root.exists()


def test_one_ledger_per_service_folder(tmp_path, service):
    with pytest.raises(LedgerError, match="belongs to the service folder"):
        ErasureService(tmp_path / "elsewhere", service.ledger.path)
    with pytest.raises(LedgerError, match="holds another ledger"):
        ErasureService(service.root, service.root / "second.sqlite", create=True)


def test_a_request_whose_run_kills_its_worker_every_time_fails_after_three_attempts(service, fake_erase):
    request = service.submit("default", ["spk05"])
    with service.change() as db:  # the third attempt's worker died too
        Ledger.update_request(db, request.id, status="running", attempts=3, parent=request.masked_version)
    assert Worker(service, "default", erase=fake_erase).run() == []
    request = service.ledger.request(request.id)
    assert request.status == "failed" and "interrupted 3 times" in request.error
    assert service.ledger.current("default").masked == ("spk05",)  # still masked
