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


def test_explicit_choices_win_and_a_users_own_setting_is_not_repeated(tmp_path):
    model = model_file(tmp_path)
    write_state(
        tmp_path, pretrain={"model": model, "overrides": ["dataset=fsdd", "model=small_cnn", "paths.data=/a"]}
    )
    given = [f"paths.root={tmp_path}", "dataset=audiomnist", "forget=[01]"]
    assert follow_on(given, "unlearn") == (given, None)
    assert follow_on([f"paths.root={tmp_path}", f"input={model}"], "unlearn")[1] is None
    overrides, _ = follow_on([f"paths.root={tmp_path}", "paths.data=/b"], "unlearn")
    assert "paths.data=/a" not in overrides and "paths.data=/b" in overrides


def test_audit_audits_the_last_unlearning_of_that_model(tmp_path):
    model, unlearned = model_file(tmp_path), model_file(tmp_path, "unlearned.pt")
    write_state(
        tmp_path,
        pretrain={"model": model, "overrides": ["dataset=fsdd", "model=small_cnn"]},
        unlearn={"model": unlearned, "input": model, "method": "qpae", "overrides": []},
    )
    overrides, _ = follow_on([f"paths.root={tmp_path}"], "audit")
    assert f"original={model}" in overrides and f"+unlearned.qpae={unlearned}" in overrides


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
    unlearn = [sys.executable, "-m", "qpae.cli.unlearn", *common, "forget=[spk01]", "unlearn.epochs=1"]
    proc = subprocess.run(
        [*unlearn, f"hydra.run.dir={tmp_path}/u", "trainer.enable_progress_bar=false"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"using the model pretrained last: {model.resolve()}" in proc.stdout
    assert "dataset.n_speakers=8" in proc.stdout
    assert (tmp_path / "u" / "request-01" / "receipt.json").is_file()
    assert "qpae-verify-receipt" in proc.stdout
