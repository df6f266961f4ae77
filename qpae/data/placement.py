"""Where a data loader's batches come from on an accelerator: the device itself, pinned host
memory, or plain host memory.

On a CPU nothing changes: batches are gathered from the feature store, one read per batch
(:class:`~qpae.data.windows_dataset.WindowDataset`). On a GPU, a split whose float16 features fit
in ``device_cache_mb`` is copied to the device once (:class:`ResidentWindows`) and every batch is
one ``index_select`` there; a split that does not fit is read from the store into pinned host
memory and copied without blocking. Either way the samplers, and so the order of samples, are the
loaders' own.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from qpae.data.windows_dataset import WindowDataset

log = logging.getLogger(__name__)

MiB = 1 << 20


@dataclass(frozen=True)
class Placement:
    """How batches reach ``device``: ``resident`` (features held on it), ``pinned`` (page-locked
    host batches, copied without blocking) or ``host`` (plain host batches: the CPU's path)."""

    kind: str
    device: torch.device
    reason: str = ""

    @property
    def pin_memory(self) -> bool:
        return self.kind == "pinned"


def choose_placement(nbytes: int, device: torch.device | str, budget_mb: float) -> Placement:
    """Resident when the features (``nbytes``, float16) fit in ``budget_mb`` of an accelerator,
    else pinned host memory; plain host memory on a CPU (there is no copy to speed up)."""
    device = torch.device(device)
    if budget_mb < 0:
        raise ValueError(f"device_cache_mb must be >= 0 (0 turns the device cache off), got {budget_mb}")
    if device.type == "cpu":
        return Placement("host", device)
    if nbytes <= budget_mb * MiB:
        return Placement("resident", device, f"{nbytes / MiB:.0f} MiB of features held on {device}")
    return Placement(
        "pinned",
        device,
        f"the features ({nbytes / MiB:.0f} MiB) exceed dataset.device_cache_mb={budget_mb:g}: batches come "
        "from pinned host memory instead (raise the budget to keep them on the device)",
    )


def fingerprint(data: WindowDataset) -> str:
    """Which windows a view holds (their shards and rows), to reuse a resident copy of it."""
    h = hashlib.sha256()
    for part in (np.asarray(data.shard_names, dtype=object).astype(str), data.shard, data.row):
        h.update(np.ascontiguousarray(part).tobytes())
    h.update(repr((data.shape, data.mean, data.std)).encode())
    return h.hexdigest()


def feature_bytes(data: WindowDataset) -> int:
    """Bytes of a view's features as the store holds them (float16)."""
    return len(data) * int(np.prod(data.shape)) * 2


class ResidentWindows(Dataset):
    """The windows of a :class:`WindowDataset`, read once into ``device`` memory (float16, as the
    store holds them); a batch is one ``index_select``, converted to float32 and normalised on the
    device, so it equals the store's batch of the same positions exactly.

    Only for loaders in the main process (``num_workers=0``): its tensors live on the device.
    """

    def __init__(self, source: WindowDataset, device: torch.device | str, chunk: int = 4096) -> None:
        device = torch.device(device)
        dim = int(np.prod(source.shape))
        # Lightning's test loop runs under inference mode, where the copy of the test split is first
        # made: ordinary tensors all the same, so that wipe() can zero them afterwards
        with torch.inference_mode(False):
            self.features = torch.empty((len(source), dim), dtype=torch.float16, device=device)
            for start in range(0, len(source), chunk):  # float16 straight from the store, chunk by chunk
                stop = min(len(source), start + chunk)
                rows = torch.from_numpy(source.raw16(np.arange(start, stop)))
                self.features[start:stop].copy_(rows)
            self.targets = source.targets.to(device)
            # tensors, not Python floats: CUDA divides by a float as a multiply by its reciprocal
            # (1 ulp off the host's division); by a tensor it divides exactly, as the host does
            self._mean = torch.tensor(float(source.mean), dtype=torch.float32, device=device)
            self._std = torch.tensor(float(source.std), dtype=torch.float32, device=device)
        self.shape, self.mean, self.std = tuple(source.shape), float(source.mean), float(source.std)
        self.device = device

    def __len__(self) -> int:
        return len(self.targets)

    def wipe(self) -> None:
        """Zero the features in place, then let them go: a loader still holding this copy fails
        rather than serve a forgotten speaker's features."""
        self.features.zero_()
        self.features = self.features.new_empty((0, self.features.shape[1]))

    def __getitems__(self, positions: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.features) != len(self.targets):
            raise RuntimeError("these device copies of the features were dropped (after a run or a purge)")
        idx = torch.as_tensor(np.asarray(positions, dtype=np.int64)).to(self.device, non_blocking=True)
        x = self.features.index_select(0, idx).float().view(len(idx), *self.shape)
        x.sub_(self._mean).div_(self._std)
        return x, self.targets.index_select(0, idx)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([int(position)])
        return x[0], y[0]


__all__ = ["Placement", "ResidentWindows", "choose_placement", "feature_bytes", "fingerprint"]
