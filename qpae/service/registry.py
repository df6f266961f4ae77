"""The model registry's files: content-addressed models and the receipt chain's records.

``<root>/models/<sha256>.pt`` (the name is the hash of the bytes: a file is the version it names,
or it is damaged) and ``<root>/receipts/<seq>.json``. Files are written atomically before the
ledger transaction that registers them; :func:`remove_orphans` (run under the registration lock)
deletes what a process killed between the two left behind, so a file is either registered or
absent.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from filelock import FileLock, Timeout

from qpae.checkpoints import write_atomic
from qpae.publish import remove_stale_leftovers


class Registry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.models = self.root / "models"
        self.receipts = self.root / "receipts"
        self.work = self.root / "work"
        for folder in (self.models, self.receipts, self.work):
            folder.mkdir(parents=True, exist_ok=True)

    def lock(self, timeout_s: float = 120) -> FileLock:
        """Held while files are written and registered (and while orphans are removed)."""
        return FileLock(self.root / "registry.lock", timeout=timeout_s)

    def exclusive(self, name: str) -> FileLock:
        """A lock only one process may hold (the server's, the worker's); acquire(timeout=0)."""
        return FileLock(self.root / f"{name}.lock", timeout=0)

    def model_path(self, sha256: str) -> Path:
        return self.models / f"{sha256}.pt"

    def record_path(self, seq: int) -> Path:
        return self.receipts / f"{seq:06d}.json"

    def write_model(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self.model_path(sha)
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != sha:
            write_atomic(path, data)
        return sha

    def write_record(self, seq: int, data: bytes) -> None:
        write_atomic(self.record_path(seq), data)

    def read_record(self, seq: int) -> bytes | None:
        try:
            return self.record_path(seq).read_bytes()
        except FileNotFoundError:
            return None

    def remove_orphans(self, registered_models: set[str], last_seq: int) -> list[Path]:
        """Delete model files no version names and records past the chain's head: what a process
        killed between writing files and committing left. Call under :meth:`lock`."""
        removed = []
        for folder in (self.models, self.receipts):
            removed += remove_stale_leftovers(folder)
        for path in self.models.glob("*.pt"):
            if path.stem not in registered_models:
                path.unlink(missing_ok=True)
                removed.append(path)
        for path in self.receipts.glob("*.json"):
            if path.stem.isdigit() and int(path.stem) > last_seq:
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed


__all__ = ["Registry", "Timeout"]
