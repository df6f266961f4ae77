"""The certificate: per-clip ε of the unlearned ensemble against the retrain ensemble, and the
two tests by which the instrument proves itself on every run.

* **null test** — the retrain ensemble's first half against its second half: two samples of the
  same distribution, so the ε they show is the instrument's noise floor at this N;
* **power test** — N runs of a method that does not forget (``finetune``) against the retrain
  ensemble: the ε it shows is what the instrument reports when forgetting failed.

A certificate is *valid* only when the null test sits near 0 and the power test is large; both
are judged on the Clopper–Pearson ε (:func:`qpae.audit.epsilon.clip_epsilon`), because the
challenge's plug-in ε of two identical ensembles is far from 0 at any N a user can afford (its
median null, 1.6–2.2 for N = 8–128, is reported beside it as its floor).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qpae.audit.epsilon import DELTA, Epsilons, epsilons, forget_score, utility_factors
from qpae.figures import plt, save, series_style

# the null test passes when the median Clopper–Pearson ε of two halves of the retrain ensemble is at
# most this (nats); identical Gaussian ensembles give 0 at every N from 8 to 128 (seeds 0–3)
NULL_MEDIAN_MAX = 0.1
# the power test passes when finetune's median Clopper–Pearson ε reaches this share of the largest
# value N models can show (a separable ensemble reaches all of it)
POWER_SHARE_MIN = 0.5


def null_test(retrain: np.ndarray, delta: float = DELTA) -> Epsilons:
    """ε of the retrain ensemble's first half against its second half ([n, clips] confidences)."""
    half = len(retrain) // 2
    return epsilons(retrain[:half], retrain[half : 2 * half], delta)


def verdict(null: Epsilons, power: Epsilons) -> dict:
    """Whether the instrument worked on this run, and why not."""
    reasons = []
    null_median = float(np.median(null.lower))
    if null_median > NULL_MEDIAN_MAX:
        reasons.append(
            f"null test: two halves of the retrain ensemble differ (median Clopper–Pearson ε {null_median:.2f} > "
            f"{NULL_MEDIAN_MAX}): the retrain ensemble is not one distribution"
        )
    power_median = float(np.median(power.lower))
    if power.lower_ceiling <= 0 or power_median < POWER_SHARE_MIN * power.lower_ceiling:
        reasons.append(
            f"power test: a method that does not forget shows a median Clopper–Pearson ε of {power_median:.2f}, "
            f"under {POWER_SHARE_MIN} × {power.lower_ceiling:.2f} (the most N models can show): raise certify.n"
        )
    return {"valid": not reasons, "reasons": reasons}


def certificate(
    unlearned: dict, retrain: dict, power: dict, delta: float = DELTA
) -> tuple[dict, dict[str, Epsilons]]:
    """The certificate's numbers from three ensembles' measures
    (:func:`qpae.audit.ensemble.ensemble_measures`), and the ε arrays behind them."""
    eps = {
        "forget": epsilons(unlearned["conf_forget"], retrain["conf_forget"], delta),
        "retain": epsilons(unlearned["conf_retain"], retrain["conf_retain"], delta),
        "null": null_test(retrain["conf_forget"], delta),
        "power": epsilons(power["conf_forget"], retrain["conf_forget"], delta),
    }
    utility = utility_factors(unlearned, {k: retrain[k] for k in ("RA", "test_acc")})
    score = forget_score(eps["forget"])
    body = {
        "n": len(unlearned["RA"]),
        "delta": delta,
        "epsilon": {name: e.summary() for name, e in eps.items()},
        "epsilon_histogram": histogram(eps["forget"].values, eps["forget"].ceiling),
        "forget_score": score,
        "utility": utility,
        "score": score * utility["RA"] * utility["test_acc"],
        "RA": {"unlearned": float(np.mean(unlearned["RA"])), "retrain": float(np.mean(retrain["RA"]))},
        "test_acc": {
            "unlearned": float(np.mean(unlearned["test_acc"])),
            "retrain": float(np.mean(retrain["test_acc"])),
        },
        "null_by_n": noise_floor(retrain["conf_forget"], delta),
        **verdict(eps["null"], eps["power"]),
    }
    return body, eps


def noise_floor(retrain: np.ndarray, delta: float = DELTA) -> dict[int, dict]:
    """The null test on the first n members for n = 8, 16, 32, … up to the ensemble's size:
    how the instrument's floor and resolution change with N."""
    out, n = {}, 8
    while n <= len(retrain):
        out[n] = null_test(retrain[:n], delta).summary()
        n *= 2
    return out


def histogram(values: np.ndarray, ceiling: float, width: float = 0.25) -> dict:
    """Counts of ε in bins of ``width`` from 0 to the ceiling (the last bin holds the ceiling)."""
    edges = np.arange(0.0, ceiling + width, width)
    counts, edges = np.histogram(np.clip(values, 0, edges[-1]), bins=edges)
    return {"edges": [round(float(e), 6) for e in edges], "counts": counts.tolist()}


def epsilon_figure(eps: dict[str, Epsilons], path: Path) -> Path:
    """The forget clips' ε beside the null and power tests' on the same axes: the challenge's ε
    (left) and the Clopper–Pearson ε (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    series = (
        ("forget clips: unlearned vs retrain", "forget"),
        ("null: retrain half vs half", "null"),
        ("power: finetune vs retrain", "power"),
    )
    for ax, (field, title, ceiling) in zip(
        axes,
        (
            ("values", "ε (the challenge's estimate)", eps["forget"].ceiling),
            ("lower", "Clopper–Pearson ε (95% per rule)", eps["forget"].lower_ceiling),
        ),
        strict=True,
    ):
        bins = np.linspace(0, max(ceiling, 1e-3) * 1.05, 22)
        for i, (label, name) in enumerate(series):
            style = series_style(i, len(series))
            values = np.clip(getattr(eps[name], field), 0, bins[-1])
            ax.hist(values, bins=bins, histtype="step", linewidth=1.6, color=style["color"], label=label)
        ax.axvline(ceiling, color="0.5", linestyle=":", linewidth=1)
        ax.set_xlabel(f"{title}; dotted: the most N models can show")
        ax.set_ylabel("clips")
    axes[0].legend(fontsize=7)
    n = eps["forget"].n[0]
    fig.suptitle(f"Per-clip ε, N = {n} models per ensemble", fontsize=10)
    return save(fig, path)
