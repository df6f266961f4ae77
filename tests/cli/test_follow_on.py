"""Commands that follow on: unlearn and audit start from what was pretrained last, unless told."""

import json
import os
import subprocess
import sys

from qpae.cli.follow_on import checkpoints_dir, follow_on
from qpae.pipeline.latest import data_overrides

from conftest import SYNTHETIC_8


def write_state(tmp_path, **state):
    (tmp_path / "checkpoints").mkdir(exist_ok=True)
    (tmp_path / "checkpoints" / "latest.json").write_text(json.dumps(state))


def model_file(tmp_path, name="pretrained.pt"):
    path = tmp_path / name
    path.write_bytes(b"x")
    return str(path)


def test_unlearn_without_dataset_or_model_starts_from_the_last_pretrained_model(tmp_path):
    model = model_file(tmp_path)
    pre = {"model": model, "overrides": ["dataset=fsdd", "model=small_cnn", "paths.data=/data"]}
    write_state(tmp_path, pretrain=pre)
    overrides, message = follow_on([f"paths.root={tmp_path}", "forget=[theo]"], "unlearn")
    assert overrides == [
        "dataset=fsdd",
        "model=small_cnn",
        "paths.data=/data",
        f"input={model}",
        f"paths.root={tmp_path}",
        "forget=[theo]",
    ]
    assert model in message and "dataset=fsdd model=small_cnn" in message


def test_explicit_choices_win_key_by_key(tmp_path):
    model = model_file(tmp_path)
    recorded = ["dataset=fsdd", "model=small_cnn", "paths.data=/a"]
    write_state(tmp_path, pretrain={"model": model, "overrides": recorded})
    root = f"paths.root={tmp_path}"
    # other data: nothing recorded applies
    given = [root, "dataset=audiomnist", "forget=[01]"]
    assert follow_on(given, "unlearn") == (given, None)
    # another model file: the recorded data still does
    overrides, _ = follow_on([root, "input=/runs/request-01/model.pt"], "unlearn")
    assert overrides == [*recorded, root, "input=/runs/request-01/model.pt"]
    # another network: the recorded data stays, the recorded model file does not
    overrides, _ = follow_on([root, "model=resnet18"], "unlearn")
    assert overrides == ["dataset=fsdd", "paths.data=/a", root, "model=resnet18"]
    # a setting of the user's own is not repeated
    overrides, _ = follow_on([root, "paths.data=/b"], "unlearn")
    assert "paths.data=/a" not in overrides and "paths.data=/b" in overrides


def test_audit_audits_the_last_unlearning_of_that_very_model(tmp_path):
    from qpae.checkpoints import sha256_file

    model, unlearned = model_file(tmp_path), model_file(tmp_path, "unlearned.pt")
    digest = sha256_file(model)
    unlearn = {"model": unlearned, "input": model, "input_sha256": digest, "method": "qpae", "overrides": []}
    pre = {"model": model, "sha256": digest, "overrides": ["dataset=fsdd", "model=small_cnn"]}
    write_state(tmp_path, pretrain=pre, unlearn=unlearn)
    overrides, _ = follow_on([f"paths.root={tmp_path}"], "audit")
    assert f"original={model}" in overrides and f"+unlearned.qpae={unlearned}" in overrides
    # the original was retrained into the same path since: the old unlearning run is not audited
    (tmp_path / "pretrained.pt").write_bytes(b"another model")
    overrides, message = follow_on([f"paths.root={tmp_path}"], "audit")
    assert not any(o.startswith("+unlearned.") for o in overrides)
    assert "did not start from this model" in message


def test_certify_certifies_the_last_unlearning_of_that_very_model_with_its_method(tmp_path):
    from qpae.checkpoints import sha256_file

    model, unlearned = model_file(tmp_path), model_file(tmp_path, "unlearned.pt")
    digest = sha256_file(model)
    unlearn = {"model": unlearned, "input": model, "input_sha256": digest, "method": "ssd", "overrides": []}
    pre = {"model": model, "sha256": digest, "overrides": ["dataset=fsdd", "model=small_cnn"]}
    write_state(tmp_path, pretrain=pre, unlearn=unlearn)
    overrides, message = follow_on([f"paths.root={tmp_path}"], "certify")
    assert f"input={model}" in overrides and f"certify.model={unlearned}" in overrides
    assert "method=ssd" in overrides and "method=ssd" in message
    # the user's method wins; another original: no unlearning run is picked
    overrides, _ = follow_on([f"paths.root={tmp_path}", "method=qpae"], "certify")
    assert "method=ssd" not in overrides and "method=qpae" in overrides
    (tmp_path / "pretrained.pt").write_bytes(b"another model")
    overrides, _ = follow_on([f"paths.root={tmp_path}"], "certify")
    assert not any(o.startswith("certify.model=") for o in overrides)


def test_audit_follows_on_from_the_demo(tmp_path):
    # make demo pretrains with experiment=demo: the audit config must accept that group
    from conftest import compose_config

    model = model_file(tmp_path)
    write_state(
        tmp_path,
        pretrain={
            "model": model,
            "overrides": ["dataset=synthetic_speakers", "model=small_cnn", "experiment=demo"],
        },
    )
    overrides, _ = follow_on([f"paths.root={tmp_path}"], "audit")
    cfg = compose_config("audit", overrides, tmp_path)
    assert cfg.dataset.n_speakers == 12 and cfg.original == model


def test_nothing_recorded_changes_nothing(tmp_path):
    assert follow_on([f"paths.root={tmp_path}"], "unlearn") == ([f"paths.root={tmp_path}"], None)
    write_state(tmp_path, pretrain={"model": str(tmp_path / "gone.pt"), "overrides": []})
    assert follow_on([f"paths.root={tmp_path}"], "unlearn")[1] is None  # the model was deleted


def test_where_the_record_lives_and_what_it_keeps(tmp_path, monkeypatch):
    monkeypatch.delenv("QPAE_ROOT", raising=False)
    assert str(checkpoints_dir([])) == "checkpoints"
    assert checkpoints_dir([f"paths.checkpoints={tmp_path}"]) == tmp_path
    keep = ["dataset=fsdd", "+dataset.label=digit", "paths.data=/d", "data_seed=1", "experiment=demo"]
    assert data_overrides([*keep, "trainer.max_epochs=3", "seed=2", "logger=csv"]) == keep


def test_make_pretrain_then_unlearn_with_no_dataset_or_model(tmp_path, feature_cache, synthetic_root):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    common = [f"paths.root={tmp_path}", f"paths.cache={feature_cache}", "logger=none"]
    pretrain = [sys.executable, "-m", "qpae.cli.pretrain", *common, f"paths.data={synthetic_root}"]
    proc = subprocess.run(
        [*pretrain, *SYNTHETIC_8[:5], "trainer.max_epochs=2", "trainer.enable_progress_bar=false"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    model = tmp_path / "checkpoints" / "synthetic_speakers" / "small_cnn" / "pretrained.pt"
    assert f"pretrained model: {model}" in proc.stdout and "test accuracy" in proc.stdout
    # purge=false: the session's shared store must keep spk01 for the other tests
    unlearn = [
        sys.executable,
        "-m",
        "qpae.cli.unlearn",
        *common,
        "forget=[spk01]",
        "unlearn.epochs=1",
        "purge=false",
    ]
    proc = subprocess.run(
        [*unlearn, f"hydra.run.dir={tmp_path}/u", "trainer.enable_progress_bar=false"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"following on from the last pretraining, {model.resolve()}" in proc.stdout
    assert "dataset.n_speakers=8" in proc.stdout
    assert (tmp_path / "u" / "request-01" / "receipt.json").is_file()
    assert "qpae-verify-receipt" in proc.stdout
