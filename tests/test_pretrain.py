"""End to end: configs compose, every model trains, real FSDD accuracy, W&B offline, DDP, resume."""

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from qpae.checkpoints import load_model
from qpae.pipeline.config import CONF_DIR
from qpae.pipeline.pretrain import pretrain

SMALL = ["dataset=synthetic_speakers", "dataset.n_speakers=6", "dataset.repetitions=3"]
GROUPS = ["dataset", "model", "trainer", "logger", "callbacks", "experiment"]


def options(config_name: str, groups: list[str]) -> list[tuple[str, str, str]]:
    return [(config_name, g, p.stem) for g in groups for p in sorted((Path(CONF_DIR) / g).glob("*.yaml"))]


@pytest.mark.parametrize(
    "config_name, group, option",
    options("pretrain", GROUPS) + options("unlearn", ["method", "dataset", "model", "trainer"]),
)
def test_every_config_file_composes(make_config, config_name, group, option):
    cfg = make_config(config_name, f"{group}={option}")
    del cfg.hydra  # the job's own keys (sweep numbers) exist only inside a run
    resolved = OmegaConf.to_container(cfg, resolve=True)
    # trainer=gpu builds a Lightning Trainer through qpae's accelerated_trainer (its speed settings)
    assert resolved["trainer"]["_target_"] in (
        "lightning.pytorch.Trainer",
        "qpae.pipeline.device.accelerated_trainer",
    )
    assert resolved["dataset"]["_target_"].startswith("qpae.data.")
    key = "output" if config_name == "pretrain" else "input"
    assert resolved[key].endswith("pretrained.pt")


def test_unknown_dataset_lists_the_valid_ones(make_config):
    with pytest.raises(MissingConfigException) as err:
        make_config("pretrain", "dataset=timit")
    assert "fsdd" in str(err.value) and "audiomnist" in str(err.value)


@pytest.mark.parametrize("model", ["small_cnn", "resnet18", "vit_tiny", "ecapa_tdnn"])
def test_fast_dev_run_writes_a_weights_only_model(make_config, model):
    cfg = make_config("pretrain", *SMALL, f"model={model}", "logger=none", "+trainer.fast_dev_run=true")
    pretrain(cfg)
    state, meta = load_model(cfg.output)
    assert meta["data"]["num_classes"] == 6 and meta["data"]["dataset"] == "synthetic_speakers"
    assert not any("optimizer" in k for k in state)
    from qpae.models.factory import create_model

    net = create_model(meta["model"]["name"], num_classes=6, img_size=(64, 101))
    net.load_state_dict(state)  # strict: the file is exactly the network


@pytest.mark.slow
def test_fsdd_speaker_id_reaches_high_accuracy(make_config, shared_data):
    cfg = make_config(
        "pretrain",
        "dataset=fsdd",
        f"paths.data={shared_data}",
        "model=small_cnn",
        "trainer.max_epochs=3",
        "logger=none",
    )
    metrics = pretrain(cfg)
    # measured 0.963 (6 speakers, chance 0.167) with this recipe
    assert metrics["test/acc"] >= 0.90


def test_wandb_offline_run_folder_is_written(make_config, tmp_path):
    cfg = make_config("pretrain", *SMALL, "model=small_cnn", "logger=wandb", "trainer.max_epochs=1")
    pretrain(cfg)
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))


def test_resume_continues_from_last_checkpoint(make_config, tmp_path):
    first = make_config("pretrain", *SMALL, "model=small_cnn", "logger=csv", "trainer.max_epochs=1")
    pretrain(first)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert last.exists()
    steps_one_epoch = torch.load(last, weights_only=True)["global_step"]
    again = make_config("pretrain", *SMALL, "model=small_cnn", "logger=csv", "trainer.max_epochs=2")
    with pytest.raises(FileExistsError, match="overwrite=true"):
        pretrain(again)  # before any work: the model file receipts name is never replaced silently
    resumed = make_config(
        "pretrain",
        *SMALL,
        "model=small_cnn",
        "logger=csv",
        "trainer.max_epochs=2",
        f"ckpt_path={last}",
        "overwrite=true",
    )
    pretrain(resumed)
    assert torch.load(last, weights_only=True)["global_step"] == 2 * steps_one_epoch


@pytest.mark.ddp
def test_ddp_on_cpu_matches_single_process(make_config, tmp_path, feature_cache, synthetic_root):
    """Two gloo processes train; their test accuracy equals one process's on the same weights."""
    data = [SMALL[0], "dataset.n_speakers=5", SMALL[2], "dataset.test_fraction=0.1"]  # 15 test clips
    overrides = [
        f"paths.root={tmp_path}",
        f"hydra.run.dir={tmp_path}/run",
        f"paths.cache={feature_cache}",
        f"paths.data={synthetic_root}",
        *data,
        "model=small_cnn",
        "logger=none",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=2",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "qpae.cli.pretrain", *overrides],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    state, meta = load_model(tmp_path / "checkpoints" / "synthetic_speakers" / "small_cnn" / "pretrained.pt")
    ddp_acc = meta["test_metrics"]["test/acc"]

    cfg = make_config("pretrain", *data, "model=small_cnn", "logger=none")
    from hydra.utils import instantiate

    from qpae.pipeline.pretrain import build_model

    dm = instantiate(cfg.dataset)
    dm.setup()
    net = build_model(cfg, dm)
    net.load_state_dict(state)
    module = instantiate(cfg.module, net=net, num_classes=dm.num_classes)
    single = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    single_acc = single.test(module, datamodule=dm, verbose=False)[0]["test/acc"]
    # an odd test set is where a padding sampler would count one clip twice
    assert len(dm.dataset("test")) % 2 == 1
    assert ddp_acc == pytest.approx(single_acc, abs=1e-6)


def test_pretraining_stops_at_convergence_and_records_its_recipe(make_config):
    # a validation loss that must improve by 10 nats an epoch: it stops after patience + 1 epochs
    cfg = make_config(
        "pretrain",
        *SMALL,
        "model=small_cnn",
        "logger=none",
        "trainer.max_epochs=20",
        "callbacks.early_stopping.patience=1",
        "callbacks.early_stopping.min_delta=10",
    )
    pretrain(cfg)
    _, meta = load_model(cfg.output)
    recipe = meta["recipe"]
    assert recipe["epochs"] == 2 and recipe["max_epochs"] == 20
    assert recipe["optimizer"] == {"name": "AdamW", "lr": 1e-3, "weight_decay": 1e-4}
    assert recipe["scheduler"] == {"name": "CosineAnnealingLR", "T_max": 20}


def test_a_model_that_was_not_tested_is_never_written(make_config, monkeypatch):
    cfg = make_config("pretrain", *SMALL, "model=small_cnn", "logger=none", "trainer.max_epochs=1")
    monkeypatch.setattr(L.Trainer, "test", lambda self, *args, **kwargs: [])
    with pytest.raises(RuntimeError, match="no model file was written"):
        pretrain(cfg)
    assert not Path(cfg.output).exists()


def test_a_model_setting_qpae_does_not_know_is_refused_before_training(make_config):
    cfg = make_config("pretrain", *SMALL, "model=resnet18", "logger=none", "+model.checkpoint_path=/tmp/x")
    with pytest.raises(ValueError, match="checkpoint_path"):
        pretrain(cfg)
