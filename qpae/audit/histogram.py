"""Histograms that never show a single clip: a fixed grid, and bars of fewer than k clips hidden.

The forgotten person may have only ten test clips. A histogram with bins placed at the sample
values, with a bar per clip, or with bars merged until they hold k clips (the edge where a bar
closes gives away the bin of the clip that closed it) publishes individual losses; the audit's
figures go to W&B and must show aggregates only. So the bins are a fixed, coarse grid that does
not depend on the data, and every bin holding fewer than ``min_clips`` clips is drawn empty: what
the figure shows is "at least k clips had a loss in this 2-nat range", never where one clip lies.
"""

from __future__ import annotations

import numpy as np

# Per-clip cross-entropy in nats: 2-nat bins on [0, 20]; larger losses count in the last bin.
LOSS_GRID = np.linspace(0.0, 20.0, 11)


def aggregated_histogram(
    values: np.ndarray, min_clips: int, grid: np.ndarray = LOSS_GRID
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(edges, counts, hidden)``: counts of ``values`` on ``grid`` (edges are ``grid``, always),
    with every bin of fewer than ``min_clips`` values set to 0; ``hidden`` is how many values
    those bins held. Values outside the grid count in its first or last bin.

    Raises:
        ValueError: ``min_clips`` < 1 or a grid that is not increasing.
    """
    if min_clips < 1:
        raise ValueError(f"min_clips must be >= 1, got {min_clips}")
    grid = np.asarray(grid, dtype=float)
    if grid.ndim != 1 or len(grid) < 2 or np.any(np.diff(grid) <= 0):
        raise ValueError("grid must be increasing bin edges")
    values = np.asarray(values, dtype=float).ravel()
    counts, _ = np.histogram(np.clip(values, grid[0], grid[-1]), bins=grid)
    sparse = counts < min_clips
    hidden = int(counts[sparse].sum())
    counts = np.where(sparse, 0, counts)
    return grid.copy(), counts.astype(int), hidden
