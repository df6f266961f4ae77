"""``qpae-unlearn``: forget classes from a pretrained model; one request or a sequence."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

import qpae
from qpae.cli.entry import entry_point, friendly_errors
from qpae.pipeline.config import CONF_DIR, is_rank_zero


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="unlearn")
@friendly_errors
def _main(cfg: DictConfig) -> None:
    # imported here, not above: `--help` and a refused command line do not wait for Lightning
    from qpae.pipeline.unlearn import unlearn
    from qpae.unlearning.runner import OUTPUT_FILES

    reports = unlearn(cfg, started=qpae.STARTED)
    if not is_rank_zero():
        return
    last = Path(cfg.output_dir) / f"request-{len(reports):02d}"
    print(
        f"outputs: {Path(cfg.output_dir).resolve()}/request-NN/ ({', '.join(OUTPUT_FILES)}), one folder per request"
    )
    print(f"verify the receipt:  qpae-verify-receipt {last / 'receipt.json'} {last / 'model.pt'}")
    print("audit the erasure:   make audit   (qpae-audit; add retrain=<a method=retrain run's model.pt>)")


main = entry_point(_main, command="unlearn")

if __name__ == "__main__":
    main()
