"""Histograms that never show a single clip: fixed bins, merged until each bar holds k clips.

The forgotten person may have only ten test clips. A histogram with bins placed at the sample
values, or with a bar per clip, publishes each clip's loss; the audit's figures (uploaded to
W&B) must show aggregates only. So the bin edges come from a fixed grid that does not depend on
the data, and adjacent bins are merged until every non-empty bar holds at least
``min_clips`` clips; a set with fewer than ``min_clips`` clips in all is not drawn.
"""

from __future__ import annotations

import numpy as np

# Per-clip cross-entropy in nats: 0.5-nat bins on [0, 20]; larger losses count in the last bin.
LOSS_GRID = np.linspace(0.0, 20.0, 41)


def aggregated_histogram(
    values: np.ndarray, min_clips: int, grid: np.ndarray = LOSS_GRID
) -> tuple[np.ndarray, np.ndarray]:
    """``(edges, counts)`` of ``values`` on ``grid``, adjacent bins merged left to right until
    each non-empty bar holds at least ``min_clips`` values (a short remainder at the right end
    joins the last full bar). Values outside the grid count in its first or last bin. Edges are
    always grid points; empty stretches stay empty bins. Fewer than ``min_clips`` values in all
    give no bins at all (empty arrays).

    Raises:
        ValueError: ``min_clips`` < 1 or a grid that is not increasing.
    """
    if min_clips < 1:
        raise ValueError(f"min_clips must be >= 1, got {min_clips}")
    grid = np.asarray(grid, dtype=float)
    if grid.ndim != 1 or len(grid) < 2 or np.any(np.diff(grid) <= 0):
        raise ValueError("grid must be increasing bin edges")
    values = np.asarray(values, dtype=float).ravel()
    if len(values) < min_clips:
        return np.empty(0), np.empty(0, dtype=int)
    counts, _ = np.histogram(np.clip(values, grid[0], grid[-1]), bins=grid)
    groups: list[list[int]] = []  # [first bin, end bin (exclusive), count]
    start, held = 0, 0
    for i, c in enumerate(counts):
        held += int(c)
        if held == 0 or held >= min_clips:  # an empty bin stays a bin; a full group closes
            groups.append([start, i + 1, held])
            start, held = i + 1, 0
    if held:  # a remainder of fewer than min_clips: merge it into the last non-empty group
        last = max(j for j, g in enumerate(groups) if g[2] > 0)
        groups[last:] = [[groups[last][0], len(counts), groups[last][2] + held]]
    edges = np.array([grid[g[0]] for g in groups] + [grid[groups[-1][1]]])
    return edges, np.array([g[2] for g in groups], dtype=int)
