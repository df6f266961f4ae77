"""``qpae-certify``: per-clip ε of an unlearning method against an ensemble of retrained models."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from qpae.cli.entry import entry_point, friendly_errors
from qpae.pipeline.certify import certify
from qpae.pipeline.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="certify")
@friendly_errors
def _main(cfg: DictConfig) -> float:
    body = certify(cfg)
    forget = body["epsilon"]["forget"]
    state = "VALID" if body["valid"] else "INVALID (" + "; ".join(body["reasons"]) + ")"
    print(
        f"certificate {state}: N={body['n']}, forget clips ε median {forget['median']:.2f} / p95 {forget['p95']:.2f} "
        f"(lower bound {forget['lower_median']:.2f} / {forget['lower_p95']:.2f}; null "
        f"{body['epsilon']['null']['lower_median']:.2f}, power {body['epsilon']['power']['lower_median']:.2f}), "
        f"score {body['score']:.3f}"
    )
    print(f"outputs: {Path(cfg.output_dir).resolve()}/certificate/ (certificate.json, epsilon_hist.png)")
    return float(forget["median"])


main = entry_point(_main, command="certify")

if __name__ == "__main__":
    main()
