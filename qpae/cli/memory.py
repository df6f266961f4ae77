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
    for name, size in cfg.sizes.items():
        if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size):
            raise ValueError(
                f"sizes.{name} must be [speakers, repetitions], whole numbers >= 1; got {list(size)}"
            )
    sizes = {str(k): (int(v[0]), int(v[1])) for k, v in cfg.sizes.items()}
    data = Path(cfg.paths.data).resolve()
    resize = [int(v) for v in cfg.resize] if cfg.resize else None
    if resize is not None and (len(resize) != 2 or min(resize) < 8):
        raise ValueError(f"resize must be null or [height, width] of at least 8 each, got {list(cfg.resize)}")
    peaks = pretrain_peaks(sizes, int(cfg.epochs), work, data, checkouts, resize)
    changes = store_changes(data, **cfg.changes) if cfg.changes else None
    work.mkdir(parents=True, exist_ok=True)
    tag = f"-{resize[0]}x{resize[1]}" if resize else ""
    (work / f"memory{tag}.json").write_text(json.dumps({"peaks": peaks, "changes": changes}, indent=2) + "\n")
    (work / f"memory{tag}.md").write_text(markdown(peaks, changes))
    print(markdown(peaks, changes))


main = entry_point(_main)

if __name__ == "__main__":
    main()
