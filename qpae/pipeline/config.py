"""What every pipeline shares: the config folder, the resolvers, composing and building from config."""

from __future__ import annotations

import functools
import logging
import os
import secrets
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from qpae.tracking import wandb_offline

log = logging.getLogger(__name__)

# conf/ sits at the project root (the design card); QPAE_CONF_DIR points elsewhere if needed.
CONF_DIR = os.environ.get("QPAE_CONF_DIR", str(Path(__file__).resolve().parents[2] / "conf"))


OmegaConf.register_new_resolver("qpae.wandb_offline", wandb_offline, replace=True)


@functools.cache
def run_id() -> str:
    """This run's folder name: the start time plus random hex, so that two runs started in the
    same second never share (and overwrite) one folder.

    Every process of one run must agree on it: Lightning's own DDP launcher hands its children
    the run folder, and it is exported as ``QPAE_RUN_ID`` for them; processes started by torchrun
    or SLURM share their launcher's job id instead (set ``QPAE_RUN_ID`` yourself for any other
    launcher).
    """
    shared = os.environ.get("QPAE_RUN_ID")
    if not shared and os.environ.get("TORCHELASTIC_RUN_ID", "none") != "none":
        shared = f"torchrun-{os.environ['TORCHELASTIC_RUN_ID']}"
    if not shared and os.environ.get("SLURM_JOB_ID"):
        shared = f"slurm-{os.environ['SLURM_JOB_ID']}-{os.environ.get('SLURM_STEP_ID', '0')}"
    if not shared:
        shared = f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{secrets.token_hex(3)}"
        os.environ["QPAE_RUN_ID"] = shared  # inherited by processes this one starts
    return shared


OmegaConf.register_new_resolver("qpae.run_id", run_id, replace=True)


def compose(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose a config outside ``@hydra.main`` (benchmarks, tests), as the entry point would.

    ``paths.output_dir`` must be among the overrides: no Hydra run sets it here.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    if GlobalHydra.instance().is_initialized():  # inside a Hydra app (qpae-bench): same conf/
        cfg = hydra_compose(config_name, overrides=overrides, return_hydra_config=True)
    else:
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            cfg = hydra_compose(config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    return cfg


def is_rank_zero() -> bool:
    """The only process, or the first of a distributed run (which alone writes and prints)."""
    return all(os.environ.get(var, "0") == "0" for var in ("RANK", "LOCAL_RANK", "SLURM_PROCID"))


def instantiate_dict(cfg: DictConfig | None) -> list:
    """Instantiate every entry of a config group that maps names to ``_target_`` objects."""
    if not cfg:
        return []
    return [hydra.utils.instantiate(c) for c in cfg.values() if c is not None and "_target_" in c]


def log_config(loggers: list, cfg: DictConfig) -> None:
    """Send the resolved run config (without Hydra's own section) to every logger."""
    resolved = {
        key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        for key, value in cfg.items()
        if key != "hydra"
    }
    for lg in loggers:
        lg.log_hyperparams(resolved)


def finish_loggers(loggers: list) -> None:
    """Close W&B runs so that the next run in this process starts a new one."""
    for lg in loggers:
        experiment_finish = getattr(getattr(lg, "experiment", None), "finish", None)
        if type(lg).__name__ == "WandbLogger" and callable(experiment_finish):
            experiment_finish()
