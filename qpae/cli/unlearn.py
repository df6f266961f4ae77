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
from qpae.publish import remove_stale_leftovers
from qpae.unlearning.request import selections_from_config
from qpae.unlearning.runner import OUTPUT_FILES, check_outputs_free, run_requests

log = logging.getLogger(__name__)


def unlearn(cfg: DictConfig) -> list[dict]:
    """Run the requests of ``cfg`` (``forget``, ``forget_index``, ``requests`` or
    ``requests_index``) in order; each starts from the last one's model."""
    # bad requests and occupied output folders fail before any data is decoded
    selections = selections_from_config(
        cfg.get("forget"), cfg.get("forget_index"), cfg.get("requests"), cfg.get("requests_index")
    )
    out_root, source = Path(cfg.output_dir), Path(cfg.input)
    # staging folders of killed runs may hold a model without its receipt: remove them first
    for leftover in remove_stale_leftovers(cfg.paths.runs, recursive=True):
        log.warning("removed %s, left by a killed run", leftover)
    check_outputs_free([out_root / f"request-{k:02d}" for k in range(1, len(selections) + 1)], source)
    hydra.utils.instantiate(cfg.unlearn)  # a bad method setting fails now too

    L.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.dataset)
    datamodule.prepare_data()
    datamodule.setup("fit")
    loggers = instantiate_dict(cfg.get("logger"))
    log_config(loggers, cfg)
    make_trainer = unlearning_trainer_factory(cfg.trainer, loggers)

    choices = HydraConfig.get().runtime.choices
    how_to_create = f"make pretrain DATASET={choices.dataset} MODEL={choices.model}"
    reports = run_requests(
        source,
        selections,
        datamodule,
        lambda: hydra.utils.instantiate(cfg.unlearn),
        make_trainer,
        out_root,
        how_to_create,
    )
    finish_loggers(loggers)
    last = out_root / f"request-{len(reports):02d}"
    log.info(
        "outputs in %s: %s (one folder per request)\nverify: qpae-verify-receipt %s %s",
        out_root,
        ", ".join(OUTPUT_FILES),
        last / "receipt.json",
        last / "model.pt",
    )
    return reports


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="unlearn")
def main(cfg: DictConfig) -> None:
    unlearn(cfg)


if __name__ == "__main__":
    main()
