"""Windows of the feature store as a torch Dataset: read by position from the shards.

A batch is gathered in one call (``__getitems__``: one read per run of rows per shard it touches), converted
from float16 and normalised with the training split's mean and std; nothing else is held in RAM
but each window's (shard, row) and label.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from qpae.data.store import FeatureStore


def as_batch(batch):
    """The DataLoader's collate_fn for :class:`WindowDataset`: its batches come collated."""
    return batch


class WindowDataset(Dataset):
    """(features [1, mels, frames], label) of the windows at ``positions`` of a data module.

    Args:
        store: the feature store the windows live in.
        shard_names: the shards, indexed by ``shard``.
        shard, row: per window, its shard (index into ``shard_names``) and row in it.
        targets: per window, its class index.
        shape: one window's feature shape.
        mean, std: the normalisation (the training split's).
    """

    def __init__(
        self,
        store: FeatureStore,
        shard_names: Sequence[str],
        shard: np.ndarray,
        row: np.ndarray,
        targets: torch.Tensor,
        shape: Sequence[int],
        mean: float = 0.0,
        std: float = 1.0,
    ) -> None:
        self.store = store
        self.shard_names = list(shard_names)
        self.shard = np.asarray(shard, dtype=np.int64)
        self.row = np.asarray(row, dtype=np.int64)
        self.targets = targets
        self.shape = tuple(shape)
        self.mean, self.std = float(mean), float(std)

    def __len__(self) -> int:
        return len(self.targets)

    def raw(self, positions: Sequence[int] | np.ndarray) -> np.ndarray:
        """Un-normalised float32 features of ``positions``, [n, dim]."""
        return self.raw16(positions, dtype=np.float32)

    def raw16(self, positions: Sequence[int] | np.ndarray, dtype=np.float16) -> np.ndarray:
        """Un-normalised features of ``positions``, [n, dim], float16 as stored (or ``dtype``)."""
        idx = np.asarray(positions, dtype=np.int64)
        dim = int(np.prod(self.shape))
        out = np.empty((len(idx), dim), dtype=dtype)
        shards, rows = self.shard[idx], self.row[idx]
        for k in np.unique(shards):
            at = shards == k
            out[at] = self.store.read_rows(self.shard_names[k], rows[at])
        return out

    def __getitems__(self, positions: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(self.raw(positions)).view(len(positions), *self.shape)
        x.sub_(self.mean).div_(self.std)
        return x, self.targets[torch.as_tensor(np.asarray(positions, dtype=np.int64))]

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([int(position)])
        return x[0], y[0]

    def subset(self, positions: torch.Tensor | np.ndarray) -> WindowDataset:
        idx = np.asarray(positions, dtype=np.int64)
        return WindowDataset(
            self.store,
            self.shard_names,
            self.shard[idx],
            self.row[idx],
            self.targets[torch.as_tensor(idx)],
            self.shape,
            self.mean,
            self.std,
        )

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every window in memory (x, y), as a TensorDataset holds them: for small views (a
        forget set, a probe sample), never the corpus."""
        if len(self) == 0:
            return torch.empty(0, *self.shape), self.targets.clone()
        return self.__getitems__(np.arange(len(self)))


def count(clips: tuple[torch.Tensor, torch.Tensor] | WindowDataset) -> int:
    """How many clips, in tensors or a :class:`WindowDataset`."""
    return len(clips) if isinstance(clips, WindowDataset) else len(clips[1])


def take(
    clips: tuple[torch.Tensor, torch.Tensor] | WindowDataset, idx: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of the clips at ``idx``, from tensors or from a :class:`WindowDataset`."""
    if isinstance(clips, WindowDataset):
        return clips.__getitems__(np.asarray(idx, dtype=np.int64))
    return clips[0][idx], clips[1][idx]


def batches(clips: tuple[torch.Tensor, torch.Tensor] | WindowDataset, batch_size: int):
    """(x, y) batches in order, from tensors or read from the store one batch at a time."""
    n = count(clips)
    if n == 0:  # one empty batch, as Tensor.split gives: a model's outputs keep their shapes
        yield take(clips, torch.arange(0))
    for start in range(0, n, batch_size):
        yield take(clips, torch.arange(start, min(n, start + batch_size)))


__all__ = ["WindowDataset", "as_batch", "batches", "count", "take"]
