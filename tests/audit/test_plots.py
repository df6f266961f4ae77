"""The audit's figures, read from their matplotlib objects (never their pixels): labels, legends,
shared axes, the 50% line, AUCs in the legend, and curves that coincide staying visible."""

import numpy as np
import pytest
import torch

from qpae.audit import plots
from qpae.audit.histogram import LOSS_GRID

MODELS = ("original", "retrain", "qpae", "random_init")


@pytest.fixture
def figures(monkeypatch):
    """The Figure each plotting call would have saved, in call order (nothing is written)."""
    captured = []
    monkeypatch.setattr(plots, "save", lambda fig, path: captured.append(fig) or path)
    return captured


def raws(steps: int = 10) -> dict[str, dict]:
    rng = np.random.default_rng(0)
    flat = [[0.0] * (steps + 1)] * 2  # two relearning draws that never bring FA back
    rising = [list(np.linspace(0, 100, steps + 1))] * 2
    out = {}
    for i, name in enumerate(MODELS):
        out[name] = {
            "loss_forget_train": torch.tensor(rng.exponential(0.3 + i, 40), dtype=torch.float32),
            "loss_forget_test": torch.tensor(rng.exponential(1.0, 10), dtype=torch.float32),
            "loss_retain_test": torch.tensor(rng.exponential(0.5, 300), dtype=torch.float32),
            "attack_forget_train": torch.tensor(rng.uniform(0, 1, 30), dtype=torch.float32),
            "attack_forget_test": torch.tensor(rng.uniform(0, 1, 10), dtype=torch.float32),
            # retrain and qpae are the same flat curve: both must stay visible
            "relearn_whole": rising if name in ("original", "random_init") else flat,
            "relearn_head": flat,
        }
    return out


def test_loss_histograms_have_a_y_label_a_legend_per_panel_and_one_x_axis(tmp_path, figures):
    plots.loss_histograms(raws(), tmp_path / "h.png", min_clips_per_bin=5)
    [fig] = figures
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == list(MODELS)
    for ax in axes:
        assert ax.get_ylabel() and ax.get_xlabel() == "per-clip loss (nats)"
        legend = ax.get_legend()
        assert legend is not None
        labels = [t.get_text().split(" (")[0] for t in legend.get_texts()]
        assert labels == ["forget-train", "forget-test", "retain-test"]
        assert ax.get_shared_x_axes().joined(axes[0], ax)
        assert ax.get_xlim() == pytest.approx((LOSS_GRID[0], LOSS_GRID[-1]))


def test_relearn_curves_show_the_50_percent_line_and_every_coinciding_curve(tmp_path, figures):
    plots.relearn_curves(raws(), tmp_path / "r.png")
    [fig] = figures
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert ax.get_ylabel() == "forget accuracy (%)" and ax.get_xlabel() == "relearning step"
        horizontal = [
            line
            for line in ax.get_lines()
            if len(set(np.asarray(line.get_ydata(), dtype=float))) == 1
            and np.asarray(line.get_ydata(), dtype=float)[0] == 50.0
        ]
        assert horizontal, "no horizontal line at 50%"
        assert ax.get_ylim()[0] < 0 and ax.get_ylim()[1] > 100  # 0% and 100% curves are whole
        legend = ax.get_legend()
        assert legend is not None
        assert {t.get_text() for t in legend.get_texts()} >= set(MODELS)
        curves = {line.get_label(): line for line in ax.get_lines() if line.get_label() in MODELS}
        assert set(curves) == set(MODELS)
        # retrain and qpae coincide: they differ in style, and the one drawn later is thinner
        same = [curves["retrain"], curves["qpae"]]
        assert np.array_equal(same[0].get_ydata(), same[1].get_ydata())
        assert same[0].get_linestyle() != same[1].get_linestyle()
        assert same[0].get_marker() != same[1].get_marker()
        assert same[0].get_linewidth() > same[1].get_linewidth()
        assert same[0].get_zorder() <= same[1].get_zorder()
    assert fig.axes[0].get_shared_x_axes().joined(*fig.axes)


def test_mia_roc_puts_each_models_auc_in_the_legend(tmp_path, figures):
    data = raws()
    members, non_members = torch.linspace(0.6, 1.0, 30), torch.linspace(0.0, 0.4, 10)
    data["original"] |= {"attack_forget_train": members, "attack_forget_test": non_members}  # AUC 1
    data["retrain"] |= {"attack_forget_train": non_members.repeat(3), "attack_forget_test": members[:10]}  # 0
    flat = torch.full((30,), 0.5)
    data["qpae"] |= {"attack_forget_train": flat, "attack_forget_test": flat[:10]}  # 0.5
    plots.mia_roc(data, tmp_path / "m.png")
    [fig] = figures
    [ax] = fig.axes
    assert ax.get_xlabel() == "false positive rate" and ax.get_ylabel() == "true positive rate"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "original (AUC 1.00)" in labels
    assert "retrain (AUC 0.00)" in labels
    assert "qpae (AUC 0.50)" in labels
    assert any(label.startswith("random_init (AUC 0.") for label in labels)
    styles = {
        (line.get_linestyle(), line.get_marker()) for line in ax.get_lines() if "AUC" in line.get_label()
    }
    assert len(styles) == len(MODELS) + 1  # every model, and the chance diagonal


def test_audit_figures_names_its_three_figures(tmp_path, figures):
    paths = plots.audit_figures(raws(), tmp_path, min_clips_per_bin=5)
    assert paths == {
        name: tmp_path / f"{name}.png" for name in ("loss_histograms", "mia_roc", "relearn_curves")
    }
    assert len(figures) == 3
