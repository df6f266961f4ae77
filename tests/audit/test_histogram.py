"""The audit's loss histograms show aggregates only: a fixed grid, no bar below k clips."""

import numpy as np
import pytest
import torch
from matplotlib.patches import StepPatch

from qpae.audit import plots
from qpae.audit.histogram import LOSS_GRID, aggregated_histogram

# ten forget-test clips, as the forgotten speaker of a small corpus has
TEN_CLIPS = np.array([0.013, 0.21, 0.37, 0.52, 0.94, 1.33, 2.71, 3.05, 7.4, 31.6])


def test_hand_counts_hide_sparse_bins():
    grid = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    values = [0.5, 0.6, 0.7, 1.5, 3.2, 3.3, 3.4, 4.5, 9.0]  # per bin: 3, 1, 0, 3, 2 (9.0 → last)
    edges, counts, hidden = aggregated_histogram(values, min_clips=3, grid=grid)
    assert edges.tolist() == grid.tolist()
    assert counts.tolist() == [3, 0, 0, 3, 0] and hidden == 3


@pytest.mark.parametrize("k", [1, 2, 3, 5, 7])
@pytest.mark.parametrize("seed", range(5))
def test_every_bar_holds_k_clips_and_every_clip_is_counted_or_hidden(k, seed):
    values = np.random.default_rng(seed).exponential(1.5, size=10 + 7 * seed)
    edges, counts, hidden = aggregated_histogram(values, k)
    assert counts.sum() + hidden == len(values)
    assert all(c == 0 or c >= k for c in counts)
    assert edges.tolist() == LOSS_GRID.tolist()  # the same edges, whatever the data


def test_one_clip_moving_changes_nothing_but_a_bar_of_at_least_k():
    # the attack on merged bars: four clips near 0 and one secret clip; where the secret lies
    # must not show, apart from which bar of >= k it joins
    base = np.array([0.1, 0.1, 0.1, 0.1])
    shown = {tuple(aggregated_histogram(np.append(base, secret), 5)[1]) for secret in (2.5, 7.3, 12.9)}
    assert shown == {tuple([0] * 10)}  # no bin reaches 5: nothing is drawn, wherever the secret is


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="min_clips"):
        aggregated_histogram(TEN_CLIPS, 0)
    with pytest.raises(ValueError, match="increasing"):
        aggregated_histogram(TEN_CLIPS, 2, grid=np.array([1.0, 0.0]))


def test_the_figure_draws_only_bars_of_at_least_k_clips(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    sets = {
        "loss_forget_train": rng.exponential(0.3, 40),
        "loss_forget_test": TEN_CLIPS,
        "loss_retain_test": rng.exponential(0.5, 300),
    }
    raws = {m: {k: torch.tensor(v, dtype=torch.float32) for k, v in sets.items()} for m in ("a", "b")}
    figures = []
    monkeypatch.setattr(plots, "save", lambda fig, path: figures.append(fig) or path)
    plots.loss_histograms(raws, tmp_path / "h.png", min_clips_per_bin=5)
    [fig] = figures
    sizes = {"forget-train": 40, "forget-test": 10, "retain-test": 300}
    bars = 0
    for ax in fig.axes:
        steps = [p for p in ax.patches if isinstance(p, StepPatch)]
        assert {p.get_label().split(" (")[0] for p in steps} == set(sizes)
        assert not [p for p in ax.patches if not isinstance(p, StepPatch)]  # no per-sample bars
        for patch in steps:
            density, edges, _ = patch.get_data()
            clips = np.asarray(density) * np.diff(edges) * sizes[patch.get_label().split(" (")[0]]
            assert np.all((np.isclose(clips, 0)) | (clips >= 5 - 1e-6)), (patch.get_label(), clips)
            assert np.asarray(edges, dtype=float).tolist() == LOSS_GRID.tolist()
            bars += int((clips > 0).sum())
    assert bars >= 2 * 3  # every set is drawn, in each panel
    assert "fewer than 5 clips are left empty" in fig._suptitle.get_text()
