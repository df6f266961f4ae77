"""``qpae-store``: the speaker-sharded feature store of a dataset."""

from __future__ import annotations

import json

import hydra
from omegaconf import DictConfig

from qpae.cli.entry import entry_point, friendly_errors
from qpae.pipeline.config import CONF_DIR
from qpae.pipeline.store import run


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="store")
@friendly_errors
def _main(cfg: DictConfig) -> None:
    print(json.dumps(run(cfg), indent=2, sort_keys=True))


main = entry_point(_main)

if __name__ == "__main__":
    main()
