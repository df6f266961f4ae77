"""Weights-only model files: what pretraining writes and unlearning reads and writes.

A model file holds the network's ``state_dict`` and plain metadata (model config, classes,
split fingerprint) — no optimizer state (Adam's moments are built from the data's gradients,
forget data included) and nothing that unpickles to code: it loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn


def save_model(path: str | Path, net: nn.Module, meta: dict) -> str:
    """Atomically write ``net``'s weights and ``meta``; return the file's sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"state_dict": state, "meta": meta}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return sha256_file(path)


def load_model(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a model file safely; raise FileNotFoundError / ValueError with a clear message."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or "state_dict" not in blob or "meta" not in blob:
        raise ValueError(f"{path} is not a qpae model file (expected keys state_dict, meta)")
    return blob["state_dict"], blob["meta"]


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_json(path: str | Path, obj: dict) -> None:
    """Atomically write ``obj`` as indented JSON (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=False)
    os.replace(tmp, path)


def build_net(meta: dict, **overrides) -> nn.Module:
    """Rebuild the network a model file describes, through qpae's factory only.

    The file's model config is data, not code: no ``_target_`` from a file is ever imported.
    """
    from qpae.models.factory import create_model

    kwargs = {k: v for k, v in meta["model"].items() if k != "_target_"}
    channels, *image = meta["data"]["input_shape"]
    kwargs.update(num_classes=meta["data"]["num_classes"], in_chans=channels, img_size=tuple(image))
    return create_model(**{**kwargs, **overrides})
