"""Matplotlib set up for files only (no display on these machines), saving a figure, and the
conventions that keep every series of a figure visible when series coincide."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# One marker and one line style per series, in draw order: two series that coincide still differ
# in shape, and (see series_style) the later one is drawn smaller and thinner on top of the other.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))


def series_style(i: int, n: int) -> dict:
    """Colour, marker, line style and sizes of series ``i`` of ``n``: series drawn first are the
    largest and thickest, so an identical curve or point drawn later sits inside it, visible."""
    shrink = (n - 1 - i) / max(n - 1, 1)  # 1 for the first series drawn, 0 for the last
    return {
        "color": f"C{i % 10}",
        "marker": MARKERS[i % len(MARKERS)],
        "linestyle": LINESTYLES[i % len(LINESTYLES)],
        "linewidth": 1.2 + 2.0 * shrink,
        "markersize": 5.0 + 5.0 * shrink,
    }


def fitted_limits(values: Iterable[float], share: float = 0.08, at_least: float = 3.0) -> tuple[float, float]:
    """Axis limits around ``values`` (NaNs ignored): their range plus a margin of ``share`` of it
    on each side, and never less than ``at_least``, so that markers at the extremes are whole."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return 0.0, 100.0
    lo, hi = min(finite), max(finite)
    margin = max(share * (hi - lo), at_least)
    return lo - margin, hi + margin


def save(fig, path: Path, dpi: int = 120) -> Path:
    """Lay out, write and close ``fig``; return ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


__all__ = ["LINESTYLES", "MARKERS", "fitted_limits", "plt", "save", "series_style"]
