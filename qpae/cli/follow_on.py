"""Commands that follow on: without ``dataset=`` / ``model=``, start from what ran last.

``make pretrain DATASET=fsdd DATA_DIR=…`` then ``make unlearn FORGET=theo`` unlearns from the
model just trained, on the same data, instead of the configs' defaults; ``make audit`` then audits
that unlearning run. An explicit ``dataset=``, ``model=`` or ``experiment=`` (or ``input=`` /
``original=``) always wins, and the command prints which model it picked.
"""

from __future__ import annotations

import os
from pathlib import Path

from qpae.pipeline import latest

EXPLICIT = {"dataset", "model", "experiment"}


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def checkpoints_dir(overrides: list[str]) -> Path:
    """Where ``paths.checkpoints`` points, from the overrides or the environment (before Hydra)."""
    values = {_key(o): o.split("=", 1)[1] for o in overrides if "=" in o}
    if "paths.checkpoints" in values:
        return Path(values["paths.checkpoints"])
    return Path(values.get("paths.root", os.environ.get("QPAE_ROOT", "."))) / "checkpoints"


def follow_on(overrides: list[str], command: str) -> tuple[list[str], str | None]:
    """``overrides`` with the latest runs' settings in front (the user's own come after and win),
    and a line saying what was picked; unchanged (and None) when the user chose explicitly or
    nothing was pretrained yet."""
    given = {_key(o) for o in overrides if "=" in o}
    if (
        given & EXPLICIT
        or (command == "unlearn" and "input" in given)
        or (command == "audit" and "original" in given)
    ):
        return overrides, None
    state = latest.read(checkpoints_dir(overrides))
    pre = state.get("pretrain")
    if not pre or not Path(pre.get("model", "")).is_file():
        return overrides, None
    added = [o for o in pre["overrides"] if _key(o) not in given]
    if command == "unlearn":
        added.append(f"input={pre['model']}")
    elif command == "audit":
        added.append(f"original={pre['model']}")
        unlearned = state.get("unlearn")
        same_source = unlearned and unlearned.get("input") == pre["model"]
        if (
            same_source
            and Path(unlearned["model"]).is_file()
            and not any(k.startswith("unlearned.") for k in given)
        ):
            added.append(f"+unlearned.{unlearned['method']}={unlearned['model']}")
    what = " ".join(o for o in added if not o.startswith(("input=", "original=")))
    message = f"qpae-{command}: no dataset=/model= given, so using the model pretrained last: {pre['model']} ({what})"
    return [*added, *overrides], message
