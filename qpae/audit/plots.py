"""Audit figures: loss histograms, membership-inference ROC curves, relearn curves.

They show distributions and curves of whole sets — never a sample's audio or spectrogram, and no
histogram bar that holds fewer than ``min_clips_per_bin`` clips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.classification import binary_roc

from qpae.audit.histogram import aggregated_histogram
from qpae.figures import plt, save


def loss_histograms(raws: dict[str, dict], path: Path, min_clips_per_bin: int = 5) -> Path:
    """Per-clip loss of forget-train vs forget-test vs retain-test, one panel per model, as
    aggregates only (:func:`~qpae.audit.histogram.aggregated_histogram`): a fixed 2-nat grid
    that does not depend on the data, and every bin of fewer than ``min_clips_per_bin`` clips
    left empty, so that no bar shows where one clip's loss lies (the forgotten person may have
    ten test clips). Bar heights are densities (share of the set's clips per nat), so sets of
    different sizes compare; the legend says how many clips sparse bins held."""
    fig, axes = plt.subplots(1, len(raws), figsize=(3.2 * len(raws), 3.3), squeeze=False)
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
    axes[0][0].legend(fontsize=7)
    fig.suptitle(
        f"Aggregated: fixed 2-nat bins; bins of fewer than {min_clips_per_bin} clips are left empty",
        fontsize=8,
    )
    return save(fig, path)


def mia_roc(raws: dict[str, dict], path: Path) -> Path:
    """ROC of the retained-data attack applied to forget-train (members) vs forget-test."""
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for name, raw in raws.items():
        scores = torch.cat([raw["attack_forget_train"], raw["attack_forget_test"]])
        target = torch.cat(
            [torch.ones(len(raw["attack_forget_train"])), torch.zeros(len(raw["attack_forget_test"]))]
        ).long()
        fpr, tpr, _ = binary_roc(scores, target)
        ax.plot(fpr.numpy(), tpr.numpy(), label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("Membership inference on the forgotten class")
    ax.legend(fontsize=7)
    return save(fig, path)


def relearn_curves(raws: dict[str, dict], path: Path) -> Path:
    """Forget accuracy vs relearning steps (mean over draws), whole network and head only."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, mode in zip(axes, ("whole", "head"), strict=True):
        for name, raw in raws.items():
            curves = torch.tensor(raw[f"relearn_{mode}"])
            ax.plot(curves.mean(0).numpy(), label=name)
        ax.set_xlabel("relearning step")
        ax.set_ylabel("forget accuracy (%)")
        ax.set_title(f"Relearn time ({mode} network)" if mode == "whole" else "Relearn time (head only)")
    axes[0].legend(fontsize=7)
    return save(fig, path)


def audit_figures(raws: dict[str, dict], folder: Path, min_clips_per_bin: int = 5) -> dict[str, Path]:
    """All three audit figures into ``folder``, by name (histogram bars of at least
    ``min_clips_per_bin`` clips)."""
    return {
        "loss_histograms": loss_histograms(raws, folder / "loss_histograms.png", min_clips_per_bin),
        "mia_roc": mia_roc(raws, folder / "mia_roc.png"),
        "relearn_curves": relearn_curves(raws, folder / "relearn_curves.png"),
    }
