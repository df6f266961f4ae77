"""``qpae-audit``: is a forgotten speaker really gone? Audit models against retrain and a floor."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from qpae.cli.entry import entry_point, friendly_errors
from qpae.pipeline.audit import run_audit
from qpae.pipeline.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="audit")
@friendly_errors
def _main(cfg: DictConfig) -> None:
    run_audit(cfg)
    print(f"audit: {cfg.output_dir}/audit.json and its figures")


main = entry_point(_main, command="audit")

if __name__ == "__main__":
    main()
