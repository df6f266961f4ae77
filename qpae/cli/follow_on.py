"""Commands that follow on: start from what was pretrained last, unless told otherwise.

``make pretrain DATASET=fsdd DATA_DIR=…`` then ``make unlearn FORGET=theo`` unlearns from the
model just trained, on the same data, instead of the configs' defaults; ``make audit`` then audits
that unlearning run beside it, and ``make certify`` certifies it. What the user gives always wins, key by key: ``dataset=`` or
``experiment=`` means other data (nothing recorded is used), ``model=`` another network (the
recorded data settings stay, the recorded model file does not), ``input=`` / ``original=`` /
``+unlearned.*=`` another model file. The command prints what it picked.
"""

from __future__ import annotations

import os
from pathlib import Path

from qpae.checkpoints import sha256_file
from qpae.pipeline import latest

OTHER_DATA = {"dataset", "experiment"}


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
    and a line saying what was picked; unchanged (and None) when the user chose other data or
    nothing was pretrained yet."""
    given = {_key(o) for o in overrides if "=" in o}
    if given & OTHER_DATA:
        return overrides, None
    state = latest.read(checkpoints_dir(overrides))
    pre = state.get("pretrain")
    if not pre or not Path(pre.get("model", "")).is_file():
        return overrides, None
    added = [o for o in pre["overrides"] if _key(o) not in given]
    same_model = "model" not in given
    notes = []
    if command in ("unlearn", "certify") and same_model and "input" not in given:
        added.append(f"input={pre['model']}")
    if command == "certify" and same_model and "certify.model" not in given:
        unlearned = state.get("unlearn")
        if unlearned and unlearned.get("input_sha256") == pre.get("sha256") == sha256_file(pre["model"]):
            added.append(f"certify.model={unlearned['model']}")
            if "method" not in given:
                added.append(f"method={unlearned['method']}")
    elif command == "audit" and same_model and "original" not in given:
        added.append(f"original={pre['model']}")
        unlearned = state.get("unlearn")
        if unlearned and not any(k.startswith("unlearned.") for k in given):
            if unlearned.get("input_sha256") == pre.get("sha256") == sha256_file(pre["model"]):
                added.append(f"+unlearned.{unlearned['method']}={unlearned['model']}")
            else:  # chained from another model, or the original was replaced since
                notes.append(
                    f"the last unlearning run ({unlearned.get('model')}) did not start from this model: "
                    "name the models to audit with +unlearned.NAME=…"
                )
    picked = " ".join(o for o in added if not o.startswith(("input=", "original=", "certify.model=")))
    message = f"qpae-{command}: following on from the last pretraining, {pre['model']} ({picked})" + "".join(
        f"\n  note: {n}" for n in notes
    )
    return [*added, *overrides], message
