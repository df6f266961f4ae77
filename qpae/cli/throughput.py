"""``qpae-throughput``: how close qpae's training loops come to the device's speed (see qpae.bench.throughput)."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from qpae.bench.throughput import measure, table
from qpae.checkpoints import json_bytes, write_atomic
from qpae.cli.entry import entry_point, friendly_errors
from qpae.pipeline.config import CONF_DIR
from qpae.pipeline.device import check_device


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="throughput")
@friendly_errors
def _main(cfg: DictConfig) -> None:
    check_device(cfg.trainer)
    report = measure(
        cfg.data_dir,
        OmegaConf.to_container(cfg.trainer, resolve=True),
        networks=list(cfg.networks),
        sizes=list(cfg.sizes),
        steps=int(cfg.steps),
        warmup=int(cfg.warmup),
        batch_size=int(cfg.batch_size),
        best_batch_size=int(cfg.best_batch_size),
        decode=bool(cfg.decode),
        repeats=int(cfg.repeats),
    )
    write_atomic(Path(cfg.output), json_bytes(report))
    print(json.dumps(report, indent=2))
    print(table(report))
    print(f"written: {cfg.output}")


main = entry_point(_main)

if __name__ == "__main__":
    main()
