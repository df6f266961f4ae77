"""``qpae-throughput``: feature-pipeline and training-loop speed (see qpae.bench.throughput)."""

from __future__ import annotations

import json

import hydra
from omegaconf import DictConfig

from qpae.bench.throughput import measure
from qpae.cli.entry import entry_point, friendly_errors
from qpae.pipeline.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="throughput")
@friendly_errors
def _main(cfg: DictConfig) -> None:
    print(json.dumps(measure(cfg.data_dir, cfg.network, cfg.steps, cfg.warmup), indent=2))


main = entry_point(_main)

if __name__ == "__main__":
    main()
