"""Forget and retained training samples for an unlearning run, drawn afresh each epoch."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ForgetRetainSampler(Sampler[int]):
    """Each epoch: every forget index plus a fresh random draw of retained ones: a
    ``retain_fraction`` of them, or exactly ``retain_count`` when given.

    With ``retain_fraction < 1`` an epoch's cost follows the forget set's size rather than the
    whole dataset's; ``retain_count`` sizes it by the request alone (the automatic schedule).
    Seeded by ``seed`` and the epoch (Lightning calls :meth:`set_epoch`).
    """

    def __init__(
        self,
        forget: torch.Tensor,
        retain: torch.Tensor,
        retain_fraction: float = 1.0,
        seed: int = 0,
        retain_count: int | None = None,
    ) -> None:
        if not 0.0 < retain_fraction <= 1.0:
            raise ValueError(f"retain_fraction must be in (0, 1], got {retain_fraction}")
        if retain_count is not None and not 0 <= retain_count <= len(retain):
            raise ValueError(
                f"a retained subsample of {retain_count} clips was asked for, but the retained set has "
                f"{len(retain)}"
            )
        self.forget, self.retain = forget.long(), retain.long()
        self.retain_count = retain_count
        self.retain_fraction, self.seed, self.epoch = retain_fraction, seed, 0
        if len(self) == 0:
            raise ValueError("no training samples to unlearn with")

    @property
    def retain_per_epoch(self) -> int:
        if self.retain_count is not None:
            return self.retain_count
        return int(round(len(self.retain) * self.retain_fraction))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.forget) + self.retain_per_epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        retain = self.retain[torch.randperm(len(self.retain), generator=g)[: self.retain_per_epoch]]
        chosen = torch.cat([self.forget, retain])
        return iter(chosen[torch.randperm(len(chosen), generator=g)].tolist())
