"""``qpae-verify-eval``: speaker-verification EER / minDCF and a DET curve for one or more models."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from qpae.cli.entry import entry_point, friendly_errors
from qpae.pipeline.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="verify_eval")
@friendly_errors
def _main(cfg: DictConfig) -> None:
    from qpae.pipeline.verify import run_verification  # `--help` does not wait for Lightning

    run_verification(cfg)
    print(f"verification: {cfg.output_dir}/verification.json and det.png")


main = entry_point(_main)

if __name__ == "__main__":
    main()
