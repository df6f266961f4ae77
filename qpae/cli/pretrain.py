"""``qpae-pretrain``: train a classifier and write its weights-only model file."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from qpae.cli.entry import entry_point, friendly_errors
from qpae.pipeline.config import CONF_DIR
from qpae.pipeline.pretrain import pretrain


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="pretrain")
@friendly_errors
def _main(cfg: DictConfig) -> None:
    metrics = pretrain(cfg)
    print(f"pretrained model: {Path(cfg.output).resolve()}  (test accuracy {100 * metrics['test/acc']:.1f}%)")


main = entry_point(_main)

if __name__ == "__main__":
    main()
