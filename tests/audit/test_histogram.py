"""The audit's loss histograms show aggregates only: fixed bins, no bar below k clips."""

import numpy as np
import pytest
import torch
from matplotlib.patches import StepPatch

from qpae.audit import plots
from qpae.audit.histogram import LOSS_GRID, aggregated_histogram

# ten forget-test clips, as the forgotten speaker of a small corpus has
TEN_CLIPS = np.array([0.013, 0.21, 0.37, 0.52, 0.94, 1.33, 2.71, 3.05, 7.4, 31.6])


def test_hand_counts_merge_left_to_right_and_the_remainder_joins_the_last_bar():
    grid = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    values = [0.5, 0.6, 1.5, 3.2, 3.3, 3.4, 4.5]  # per bin: 2, 1, 0, 3, 1
    edges, counts = aggregated_histogram(values, min_clips=3, grid=grid)
    # bins 0-1 (2+1 = 3) close; bin 2 is empty and stays; bin 3 (3) closes; bin 4 (1) is short
    # and joins bin 3
    assert edges.tolist() == [0.0, 2.0, 3.0, 5.0]
    assert counts.tolist() == [3, 0, 4]


@pytest.mark.parametrize("k", [1, 2, 3, 5, 7])
@pytest.mark.parametrize("seed", range(5))
def test_every_bar_holds_k_clips_and_no_clip_is_lost(k, seed):
    values = np.random.default_rng(seed).exponential(1.5, size=10 + 7 * seed)
    edges, counts = aggregated_histogram(values, k)
    assert counts.sum() == len(values)
    assert all(c == 0 or c >= k for c in counts)
    assert set(edges) <= set(LOSS_GRID)  # fixed grid points, whatever the data


def test_edges_do_not_sit_at_the_clip_values():
    edges, counts = aggregated_histogram(TEN_CLIPS, 5)
    assert not set(np.round(edges, 9)) & set(np.round(TEN_CLIPS, 9))
    assert counts.tolist() == [5, 5]  # ten clips: two bars at most, whatever their spread
    shifted_edges, _ = aggregated_histogram(TEN_CLIPS + 0.01, 5)
    assert shifted_edges.tolist() == edges.tolist()  # the bins do not follow the samples


def test_too_few_clips_draw_nothing_and_bad_settings_are_refused():
    edges, counts = aggregated_histogram(TEN_CLIPS[:4], 5)
    assert len(edges) == 0 and len(counts) == 0
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
    samples = {"forget-train": sets["loss_forget_train"], "forget-test": TEN_CLIPS}
    bars = 0
    for ax in fig.axes:
        steps = [p for p in ax.patches if isinstance(p, StepPatch)]
        assert {p.get_label() for p in steps} == set(sizes)
        assert not [p for p in ax.patches if not isinstance(p, StepPatch)]  # no per-sample bars
        for patch in steps:
            density, edges, _ = patch.get_data()
            clips = np.asarray(density) * np.diff(edges) * sizes[patch.get_label()]
            assert np.all((np.isclose(clips, 0)) | (clips >= 5 - 1e-6)), (patch.get_label(), clips)
            assert set(np.asarray(edges, dtype=float)) <= set(LOSS_GRID)  # 0.5-nat steps: exact
            if patch.get_label() in samples:
                values = samples[patch.get_label()].astype(np.float32)
                assert not np.isin(np.asarray(edges, dtype=np.float32), values).any()
            bars += int((clips > 0).sum())
    assert bars >= 2 * 3  # every set is drawn, in each panel
    assert "≥ 5 clips" in fig._suptitle.get_text()
