"""Results to Weights & Biases: one run holding tables, figures and a markdown summary.

Offline unless a key is configured (``wandb sync`` uploads later). Only aggregate numbers and
plots are logged, never audio or spectrograms.
"""

from __future__ import annotations

import os
from pathlib import Path


def wandb_offline() -> bool:
    """W&B runs offline unless a key is configured or WANDB_MODE asks for online."""
    if os.environ.get("WANDB_MODE") in ("online", "run"):
        return False
    if os.environ.get("WANDB_MODE") in ("offline", "dryrun", "disabled"):
        return True
    return not os.environ.get("WANDB_API_KEY")


def log_results(
    job_type: str,
    out_dir: Path,
    tables: dict[str, list[dict]],
    images: dict[str, Path],
    summary: dict | None = None,
    project: str = "qpae",
) -> None:
    """One W&B run under ``out_dir`` with ``tables`` (a column per key of any row), PNG
    ``images`` and ``summary`` values."""
    import wandb

    run = wandb.init(
        project=project, job_type=job_type, mode="offline" if wandb_offline() else "online", dir=str(out_dir)
    )
    logged = {name: wandb.Image(str(path)) for name, path in images.items()}
    for name, rows in tables.items():
        if rows:
            columns = list(dict.fromkeys(k for r in rows for k in r))
            logged[name] = wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows])
    run.log(logged)
    run.summary.update(summary or {})
    run.finish()
