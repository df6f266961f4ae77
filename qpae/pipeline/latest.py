"""What the last pretraining and unlearning runs made, so that the next command can start there.

``make pretrain DATASET=fsdd DATA_DIR=…`` records its dataset and model choices, the overrides
that shape the data (data dir, dataset settings, split seed) and the model file it wrote; a
following ``qpae-unlearn`` or ``qpae-audit`` without ``dataset=`` / ``model=`` starts from that
record instead of the configs' defaults (and says so). The record is one small JSON file,
``<paths.checkpoints>/latest.json``, written whole or not at all.
"""

from __future__ import annotations

import json
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from qpae.checkpoints import save_json

FILE_NAME = "latest.json"
# the overrides of a pretraining run that decide which data and network a later command rebuilds
DATA_KEYS = ("dataset", "model", "experiment", "paths.data", "paths.cache", "data_seed")


def data_overrides(task_overrides: list[str]) -> list[str]:
    """The overrides among ``task_overrides`` that shape the data and the network."""
    out = []
    for override in task_overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if any(key == k or key.startswith(k + ".") for k in DATA_KEYS):
            out.append(override)
    return out


def record(cfg: DictConfig, kind: str, entry: dict) -> Path:
    """Store ``entry`` (with this run's data overrides) as the latest ``kind`` run."""
    path = Path(cfg.paths.checkpoints) / FILE_NAME
    hydra_cfg = HydraConfig.get()
    choices = hydra_cfg.runtime.choices
    overrides = [f"dataset={choices.dataset}", f"model={choices.model}"]
    overrides += [
        o for o in data_overrides(list(hydra_cfg.overrides.task)) if not o.startswith(("dataset=", "model="))
    ]
    state = read(path.parent)
    if kind == "pretrain":  # a new original: the last unlearning run no longer follows from it
        state.pop("unlearn", None)
    state[kind] = {**entry, "overrides": overrides}
    save_json(path, state)
    return path


def read(checkpoints: str | Path) -> dict:
    """The record in ``checkpoints`` (empty when there is none or it is unreadable)."""
    path = Path(checkpoints) / FILE_NAME
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}
