"""The enrolment store: one voiceprint (the L2-normalised mean embedding of their enrolment clips)
per enrolled person, kept as one ``.npz`` file written whole or not at all.

Forgetting a person in verification mode begins here: :meth:`EnrolmentStore.without` gives the
store minus them, and :func:`remove_speakers` writes it in place of the old one atomically and
returns both files' sha256 for the receipt. An unknown name changes nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qpae.checkpoints import write_atomic

FORMAT = "qpae-enrolment-v1"


class EnrolmentError(ValueError):
    """Bad enrolment input or an edit the store cannot make (nothing was modified)."""


def l2_normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    if (norm == 0).any():
        raise EnrolmentError("an embedding is all zeros: it has no direction to score")
    return x / norm


@dataclass(frozen=True)
class EnrolmentStore:
    """Enrolled names, their voiceprints [S, d] (unit length) and how many clips made each;
    ``meta``: how it was made (the encoder's sha256, the dataset, enrol_clips, seed), so that a
    later edit can check it is applied to the store of the model it erases from."""

    names: tuple[str, ...]
    voiceprints: np.ndarray
    clips: tuple[int, ...]
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names):
            raise EnrolmentError("an enrolment store names each person once")
        if (
            self.voiceprints.ndim != 2
            or len(self.voiceprints) != len(self.names)
            or len(self.clips) != len(self.names)
        ):
            raise EnrolmentError(
                f"{len(self.names)} names, {len(self.clips)} clip counts and voiceprints of shape "
                f"{self.voiceprints.shape}: they must agree"
            )

    @classmethod
    def enrol(cls, embeddings: np.ndarray, speakers: Sequence[str], min_clips: int = 3) -> EnrolmentStore:
        """Voiceprints from enrolment clips' ``embeddings`` [n, d] and each clip's speaker name.

        Raises:
            EnrolmentError: a speaker with fewer than ``min_clips`` clips (all such are named).
        """
        emb = np.asarray(embeddings, dtype=np.float64)
        speakers = [str(s) for s in speakers]
        if emb.ndim != 2 or len(emb) != len(speakers):
            raise EnrolmentError(f"{len(speakers)} speaker names for embeddings of shape {emb.shape}")
        if min_clips < 1:
            raise EnrolmentError(f"min_clips must be >= 1, got {min_clips}")
        names = sorted(set(speakers))
        counts = {n: speakers.count(n) for n in names}
        short = {n: c for n, c in counts.items() if c < min_clips}
        if short:
            raise EnrolmentError(
                f"enrolment needs at least {min_clips} clips per person; too few for {short} (nothing was enrolled)"
            )
        spk = np.asarray(speakers)
        prints = np.stack([l2_normalise(l2_normalise(emb[spk == n]).mean(axis=0)) for n in names])
        return cls(tuple(names), prints.astype(np.float32), tuple(counts[n] for n in names))

    def voiceprint(self, name: str) -> np.ndarray:
        return self.voiceprints[self.index(name)]

    def index(self, name: str) -> int:
        if name not in self.names:
            raise EnrolmentError(f"{name!r} is not enrolled; enrolled: {list(self.names)}")
        return self.names.index(name)

    def without(self, names: Sequence[str]) -> EnrolmentStore:
        """This store minus ``names``; an unknown name is refused (nothing is removed)."""
        names = [str(n) for n in names]
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise EnrolmentError(f"cannot remove {unknown}: not enrolled (enrolled: {list(self.names)})")
        keep = [k for k, n in enumerate(self.names) if n not in set(names)]
        return EnrolmentStore(
            tuple(self.names[k] for k in keep),
            self.voiceprints[keep],
            tuple(self.clips[k] for k in keep),
            dict(self.meta),
        )

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            format=np.asarray(FORMAT),
            names=np.asarray(self.names, dtype=np.str_),
            voiceprints=self.voiceprints.astype(np.float32),
            clips=np.asarray(self.clips, dtype=np.int64),
            meta=np.asarray(json.dumps(self.meta, sort_keys=True, default=str)),
        )
        return buffer.getvalue()

    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def save(self, path: str | Path) -> str:
        """Write the store whole (temp file, fsync, rename); its sha256."""
        data = self.to_bytes()
        write_atomic(path, data)
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def load(cls, path: str | Path) -> EnrolmentStore:
        with np.load(Path(path), allow_pickle=False) as f:
            if "format" not in f or str(f["format"]) != FORMAT:
                raise EnrolmentError(f"{path} is not a qpae enrolment store ({FORMAT})")
            names = tuple(str(n) for n in f["names"])
            meta = json.loads(str(f["meta"])) if "meta" in f else {}
            return cls(names, f["voiceprints"].astype(np.float32), tuple(int(c) for c in f["clips"]), meta)


def remove_speakers(path: str | Path, names: Sequence[str]) -> dict:
    """Remove ``names`` from the store at ``path`` in place, atomically: the file holds the old
    store or the new one, never part of either. Returns what the receipt records."""
    path = Path(path)
    before_bytes = path.read_bytes()
    store = EnrolmentStore.load(path)
    after = store.without(names)  # an unknown name fails here, before anything is written
    after_sha = after.save(path)
    return {
        "store": str(path),
        "removed": sorted(str(n) for n in names),
        "sha256_before": hashlib.sha256(before_bytes).hexdigest(),
        "sha256_after": after_sha,
        "enrolled_after": len(after.names),
    }


__all__ = ["EnrolmentError", "EnrolmentStore", "l2_normalise", "remove_speakers"]
