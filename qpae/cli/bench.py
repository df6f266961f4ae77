"""``qpae-bench``: run the cells of a bench profile (resumable) and write the report."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from qpae.bench.profile import bench
from qpae.cli.entry import entry_point, friendly_errors
from qpae.pipeline.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="bench")
@friendly_errors
def _main(cfg: DictConfig) -> None:
    results = bench(cfg)
    print((results / "report.md").read_text())
    print(f"bench results: {results}/ (report.md, results.csv, figures)")


main = entry_point(_main)

if __name__ == "__main__":
    main()
