"""Audit figures: loss histograms, membership-inference ROC curves, relearn curves.

They show distributions and curves of whole sets — never a sample's audio or spectrogram, and no
histogram bar that holds fewer than ``min_clips_per_bin`` clips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.classification import binary_auroc, binary_roc

from qpae.audit.histogram import LOSS_GRID, aggregated_histogram
from qpae.figures import plt, save, series_style


def loss_histograms(raws: dict[str, dict], path: Path, min_clips_per_bin: int = 5) -> Path:
    """Per-clip loss of forget-train vs forget-test vs retain-test, one panel per model on a
    shared loss axis, as aggregates only (:func:`~qpae.audit.histogram.aggregated_histogram`):
    a fixed 2-nat grid that does not depend on the data, and every bin of fewer than
    ``min_clips_per_bin`` clips left empty, so that no bar shows where one clip's loss lies (the
    forgotten person may have ten test clips). Bar heights are densities (share of the set's
    clips per nat), so sets of different sizes compare; each panel's legend says how many of
    that model's clips sparse bins held."""
    fig, axes = plt.subplots(1, len(raws), figsize=(3.4 * len(raws), 3.4), sharex=True, squeeze=False)
    for ax, (name, raw) in zip(axes[0], raws.items(), strict=True):
        for key, label in (
            ("loss_forget_train", "forget-train"),
            ("loss_forget_test", "forget-test"),
            ("loss_retain_test", "retain-test"),
        ):
            values = raw[key].numpy()
            edges, counts, hidden = aggregated_histogram(values, min_clips_per_bin)
            density = counts / (max(len(values), 1) * np.diff(edges))
            ax.stairs(density, edges, fill=True, alpha=0.5, label=f"{label} ({hidden} in sparse bins)")
        ax.set_title(name)
        ax.set_xlabel("per-clip loss (nats)")
        ax.set_ylabel("density (share of clips per nat)")
        ax.legend(fontsize=6)
    axes[0][0].set_xlim(LOSS_GRID[0], LOSS_GRID[-1])
    fig.suptitle(
        f"Aggregated: fixed 2-nat bins; bins of fewer than {min_clips_per_bin} clips are left empty",
        fontsize=8,
    )
    return save(fig, path)


def mia_roc(raws: dict[str, dict], path: Path) -> Path:
    """ROC of the retained-data attack applied to forget-train (members) vs forget-test, one
    curve per model with its AUC in the legend (torchmetrics' ``binary_auroc``); each model has
    its own line style and marker, and earlier curves are drawn thicker, so equal curves show."""
    fig, ax = plt.subplots(figsize=(5, 4.4))
    for i, (name, raw) in enumerate(raws.items()):
        scores = torch.cat([raw["attack_forget_train"], raw["attack_forget_test"]])
        target = torch.cat(
            [torch.ones(len(raw["attack_forget_train"])), torch.zeros(len(raw["attack_forget_test"]))]
        ).long()
        fpr, tpr, _ = binary_roc(scores, target)
        auc = binary_auroc(scores, target).item()
        style = series_style(i, len(raws))
        ax.plot(fpr.numpy(), tpr.numpy(), label=f"{name} (AUC {auc:.2f})", markevery=0.1, **style)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="chance (AUC 0.50)")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("Membership inference on the forgotten class")
    ax.legend(fontsize=7)
    return save(fig, path)


def relearn_curves(raws: dict[str, dict], path: Path) -> Path:
    """Forget accuracy vs relearning steps (mean over draws), whole network and head only, with
    the 50% line that the "steps to 50%" measure crosses. Each model has its own line style and
    marker, and earlier curves are drawn thicker, so curves that coincide (two models that both
    stay at 0%) stay visible."""
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8), sharex=True, sharey=True)
    for ax, mode in zip(axes, ("whole", "head"), strict=True):
        for i, (name, raw) in enumerate(raws.items()):
            curve = torch.tensor(raw[f"relearn_{mode}"], dtype=torch.float32).mean(0).numpy()
            ax.plot(curve, label=name, markevery=max(1, len(curve) // 8), **series_style(i, len(raws)))
        ax.axhline(50.0, color="gray", linestyle=":", linewidth=1, label="50%")
        ax.set_ylim(-5, 105)
        ax.set_xlabel("relearning step")
        ax.set_ylabel("forget accuracy (%)")
        ax.set_title("Relearn time (whole network)" if mode == "whole" else "Relearn time (head only)")
        ax.legend(fontsize=7)
    return save(fig, path)


def audit_figures(raws: dict[str, dict], folder: Path, min_clips_per_bin: int = 5) -> dict[str, Path]:
    """All three audit figures into ``folder``, by name (histogram bars of at least
    ``min_clips_per_bin`` clips)."""
    return {
        "loss_histograms": loss_histograms(raws, folder / "loss_histograms.png", min_clips_per_bin),
        "mia_roc": mia_roc(raws, folder / "mia_roc.png"),
        "relearn_curves": relearn_curves(raws, folder / "relearn_curves.png"),
    }
