"""Errors a person can act on: one line, no traceback unless asked for."""

import os
import subprocess
import sys

import pytest


def run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})},
    )


def test_a_missing_dataset_is_one_short_message_naming_layout_data_dir_and_key(tmp_path):
    args = ["qpae.cli.pretrain", f"paths.root={tmp_path}", "dataset=fsdd", "dataset.download=false"]
    proc = run(*args, f"paths.data={tmp_path}/nowhere", "logger=none")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: fsdd not found in {tmp_path}/nowhere/fsdd")
    assert "recordings/<digit>_<speaker>_<rep>.wav" in proc.stderr  # the layout
    assert "DATA_DIR=" in proc.stderr and "dataset.data_dir=" in proc.stderr
    assert "Traceback" not in proc.stderr and "--verbose" in proc.stderr
    verbose = run(*args, f"paths.data={tmp_path}/nowhere", "logger=none", "--verbose")
    assert verbose.returncode != 0 and "Traceback" in verbose.stderr


def test_a_missing_model_names_the_pretrain_command_with_every_argument(tmp_path):
    proc = run(
        "qpae.cli.unlearn",
        f"paths.root={tmp_path}",
        "dataset=synthetic_speakers",
        "model=small_cnn",
        "dataset.n_speakers=3",
        "dataset.repetitions=3",
        f"paths.data={tmp_path}/data",
        f"paths.cache={tmp_path}/cache",
        "logger=wandb",
        "forget=[spk00]",
        f"hydra.run.dir={tmp_path}/run",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    first = proc.stderr.splitlines()[0]
    assert "make pretrain DATASET=synthetic_speakers MODEL=small_cnn" in first
    assert f"DATA_DIR={tmp_path}/data" in first and "dataset.n_speakers=3" in first
    assert not (tmp_path / "run" / "wandb").exists()  # a refused run leaves no W&B folder


def test_an_unknown_class_lists_the_valid_names():
    from qpae.unlearning.request import ClassSelection, RequestError

    with pytest.raises(RequestError, match=r"unknown class '99'; classes: 0=george, 1=theo"):
        ClassSelection(names=("99",)).resolve(["george", "theo"])


def test_only_qpaes_own_checks_become_one_line_errors():
    import torch

    from qpae.cli.entry import is_user_error
    from qpae.unlearning.request import ForgetRequest

    with pytest.raises(ValueError) as ours:
        ForgetRequest((9,), 3)
    assert is_user_error(ours.value)
    with pytest.raises(RuntimeError) as torch_error:
        torch.zeros(2, 3) @ torch.zeros(4, 5)  # a bug: keeps its traceback
    assert not is_user_error(torch_error.value)
    assert not is_user_error(NotImplementedError("a subclass forgot a method"))
