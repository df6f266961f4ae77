"""A run prints what the user can act on: no advertising tips, no warnings about settings qpae
never made, and real warnings still show."""

import logging
import os
import subprocess
import sys
import warnings

from qpae.cli.noise import quiet_known_noise


def test_a_pretraining_run_with_wandb_prints_no_avoidable_noise(tmp_path, synthetic_root, feature_cache):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "qpae.cli.pretrain",
            f"paths.root={tmp_path}",
            f"paths.data={synthetic_root}",
            f"paths.cache={feature_cache}",
            "dataset.n_speakers=3",
            "dataset.repetitions=3",
            "logger=wandb",
            "+trainer.fast_dev_run=true",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "false"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    output = proc.stdout + proc.stderr
    for noise in ("💡 Tip", "anonymous setting", "LeafSpec", "Seed set to", "is up to date"):
        assert noise not in output, noise
    assert "pretrained model:" in proc.stdout


def test_other_warnings_still_show(caplog):
    quiet_known_noise()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("a real problem", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["a real problem"]
    with caplog.at_level(logging.INFO):
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False")
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("💡 Tip: buy this")
    assert "GPU available" in caplog.text and "Tip" not in caplog.text
