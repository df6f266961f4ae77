"""Weights-only model files: what pretraining writes and unlearning reads and writes.

A model file holds the network's ``state_dict`` and plain metadata (model settings, classes,
split fingerprint, pretraining recipe) — no optimizer state (Adam's moments are built from the
data's gradients, forget data included) and nothing that unpickles to code: it loads with
``torch.load(weights_only=True)``.

The same weights and metadata always give the same bytes (the archive is serialised in memory,
so no temporary file name ends up inside it), and a file is hashed from the very bytes that were
loaded, so a receipt describes the file that was used, not whatever lies at its path later.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from qpae.publish import remove_stale_leftovers, temp_prefix


@dataclass(frozen=True)
class ModelFile:
    """A model file as read once: its weights, its metadata and the sha256 of its bytes."""

    state_dict: dict[str, torch.Tensor]
    meta: dict
    sha256: str


def model_bytes(net: nn.Module, meta: dict) -> bytes:
    """The file content for ``net``'s weights and ``meta``: deterministic for equal inputs.

    ``torch.save`` names the archive's top folder after the file it writes to; serialising to
    memory gives every file the same name ("archive") and hence byte-identical output.
    """
    state = {k: v.detach().cpu().clone().contiguous() for k, v in net.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"state_dict": state, "meta": meta}, buffer)
    return buffer.getvalue()


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and one rename; the
    temp file is removed if anything fails, so a reader sees the whole file or none."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_leftovers(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)  # the rename itself survives a power cut
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems cannot fsync a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_model(path: str | Path, net: nn.Module, meta: dict) -> str:
    """Atomically write ``net``'s weights and ``meta``; return the file's sha256."""
    data = model_bytes(net, meta)
    write_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def read_model(path: str | Path) -> ModelFile:
    """Read a model file once, safely (weights only), and hash exactly the bytes loaded.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a qpae model file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    data = path.read_bytes()
    try:
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip or torch errors: not a file we wrote
        raise ValueError(f"{path} is not a readable qpae model file ({type(err).__name__}: {err})") from None
    if not isinstance(blob, dict) or "state_dict" not in blob or "meta" not in blob:
        raise ValueError(f"{path} is not a qpae model file (expected keys state_dict, meta)")
    return ModelFile(blob["state_dict"], blob["meta"], hashlib.sha256(data).hexdigest())


def load_model(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """``(state_dict, meta)`` of a model file (see :func:`read_model`)."""
    model = read_model(path)
    return model.state_dict, model.meta


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def json_bytes(obj: dict) -> bytes:
    """Indented JSON, as :func:`save_json` writes it."""
    return (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()


def save_json(path: str | Path, obj: dict) -> None:
    """Atomically write ``obj`` as indented JSON (temp file + rename; no temp file left behind)."""
    write_atomic(path, json_bytes(obj))


def build_net(meta: dict, initial_weights: bool = False) -> nn.Module:
    """Rebuild the network a model file describes, through qpae's model names and keys only.

    The file's model settings are data, not code: no ``_target_`` or timm argument from a file
    is ever used beyond :data:`qpae.models.factory.MODEL_SETTINGS`. ``initial_weights`` gives the
    network pretraining started from (ImageNet weights when the settings say
    ``pretrained: true``, else a fresh initialisation): what retrain starts from.
    """
    from qpae.models.factory import model_from_settings

    try:
        data = meta["data"]
        channels, *image = data["input_shape"]
        num_classes = int(data["num_classes"])
        settings = meta["model"]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"model file metadata is incomplete ({err!r})") from None
    return model_from_settings(
        settings,
        num_classes=num_classes,
        in_chans=int(channels),
        img_size=tuple(image),
        load_pretrained=initial_weights,
    )
