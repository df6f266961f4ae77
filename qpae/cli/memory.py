"""``qpae-memory``: peak memory as the corpus grows, and the cost of changing the feature store
(see qpae.bench.memory)."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig

from qpae.bench.memory import markdown, pretrain_peaks, store_changes
from qpae.cli.entry import PACKAGE_DIR, entry_point, friendly_errors
from qpae.pipeline.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="memory")
@friendly_errors
def _main(cfg: DictConfig) -> None:
    work = Path(cfg.work_dir).resolve()
    checkouts = {"store": PACKAGE_DIR.parent}
    if cfg.legacy:
        legacy = Path(cfg.legacy).expanduser().resolve()
        if not (legacy / "qpae" / "cli" / "pretrain.py").is_file():
            raise ValueError(f"legacy={cfg.legacy}: not a qpae checkout (no qpae/cli/pretrain.py under it)")
        checkouts["legacy"] = legacy
    sizes = {str(k): (int(v[0]), int(v[1])) for k, v in cfg.sizes.items()}
    data = Path(cfg.paths.data).resolve()
    peaks = pretrain_peaks(sizes, int(cfg.epochs), work, data, checkouts)
    changes = store_changes(data, **cfg.changes) if cfg.changes else None
    work.mkdir(parents=True, exist_ok=True)
    (work / "memory.json").write_text(json.dumps({"peaks": peaks, "changes": changes}, indent=2) + "\n")
    (work / "memory.md").write_text(markdown(peaks, changes))
    print(markdown(peaks, changes))


main = entry_point(_main)

if __name__ == "__main__":
    main()
