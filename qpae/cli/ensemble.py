"""``qpae-ensemble``: build one member of a certification ensemble (a Hydra multirun job).

qpae-certify launches it for the members it lacks; on a cluster, build them there first:
``qpae-ensemble --multirun hydra/launcher=submitit_slurm certify.kind=retrain 'certify.member=range(0,128)' …``.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from qpae.cli.entry import entry_point, friendly_errors
from qpae.pipeline.certify import build_member
from qpae.pipeline.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="certify")
@friendly_errors
def _main(cfg: DictConfig) -> None:
    print(f"member: {build_member(cfg)}")


# no follow-on: qpae-certify (or you) passes every data and model setting explicitly
main = entry_point(_main)

if __name__ == "__main__":
    main()
