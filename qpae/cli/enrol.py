"""``qpae-enrol``: make the enrolment store and cohort of verification mode, or remove people from them."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from qpae.cli.entry import entry_point, friendly_errors
from qpae.pipeline.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="enrol")
@friendly_errors
def _main(cfg: DictConfig) -> None:
    from qpae.pipeline.enrol import run_enrol  # `--help` does not wait for Lightning

    record = run_enrol(cfg)
    print(
        f"{cfg.action}: {cfg.output_dir}/"
        + ("enrolment.json" if record["action"] == "enrol" else "receipt.json")
    )


main = entry_point(_main)

if __name__ == "__main__":
    main()
