"""``qpae-unlearn``: forget classes from a pretrained model; one or a sequence of requests."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from qpae.cli.common import (
    CONF_DIR,
    finish_loggers,
    instantiate_dict,
    log_config,
    unlearning_trainer_factory,
)
from qpae.unlearning.runner import unlearn_request

log = logging.getLogger(__name__)


def unlearn(cfg: DictConfig) -> list[dict]:
    """Run ``cfg.requests`` (or the single ``cfg.forget``) in order; each starts from the last."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.dataset)
    datamodule.prepare_data()
    datamodule.setup("fit")
    requests = [list(r) for r in cfg.requests] if cfg.get("requests") else [list(cfg.forget)]
    loggers = instantiate_dict(cfg.get("logger"))
    log_config(loggers, cfg)

    make_trainer = unlearning_trainer_factory(cfg.trainer, loggers)

    choices = HydraConfig.get().runtime.choices
    how_to_create = f"make pretrain DATASET={choices.dataset} MODEL={choices.model}"
    current, out_root, reports = Path(cfg.input), Path(cfg.output_dir), []
    for k, forget in enumerate(requests, start=1):
        method = hydra.utils.instantiate(cfg.unlearn)
        out = out_root if len(requests) == 1 else out_root / f"request-{k:02d}"
        reports.append(unlearn_request(current, forget, datamodule, method, make_trainer, out, how_to_create))
        current = out / "model.pt"
    finish_loggers(loggers)
    return reports


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="unlearn")
def main(cfg: DictConfig) -> None:
    unlearn(cfg)


if __name__ == "__main__":
    main()
