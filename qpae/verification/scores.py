"""Detection metrics of verification trials: EER and minDCF, from scikit-learn's ROC.

A trial is (enrolled speaker, test clip, is_target). Higher scores mean "same speaker". The ROC
(``sklearn.metrics.roc_curve``, every distinct threshold kept) gives the miss rate
P_miss = 1 − TPR and the false-alarm rate P_fa = FPR at each threshold.

- **EER**: where P_miss = P_fa, linearly interpolated between the two ROC points that bracket the
  crossing (the usual convention; exact for score sets whose crossing is a ROC point).
- **minDCF**: min over thresholds of C_miss·P_miss·p + C_fa·P_fa·(1 − p), divided by the cost of the
  better trivial system, min(C_miss·p, C_fa·(1 − p)) (NIST SRE's normalised form), at p_target p.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_curve


def _check(
    scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if len(s) != len(y):
        raise ValueError(f"{len(s)} scores but {len(y)} labels")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite (a NaN or infinite score is a scoring bug)")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError(
            f"EER and minDCF need target and non-target trials; got {int(y.sum())} target and {int((~y).sum())} non-target"
        )
    return s, y


def error_rates(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P_miss, P_fa, thresholds) at every distinct threshold, from accepting all to none."""
    s, y = _check(scores, labels)
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    return 1.0 - tpr, fpr, thresholds


def eer(scores, labels) -> tuple[float, float]:
    """(equal error rate in [0, 1], the threshold where it is reached)."""
    p_miss, p_fa, thresholds = error_rates(scores, labels)
    diff = p_miss - p_fa  # +1 at the first point (reject all: every target missed), -1 at the last
    diff[np.isclose(diff, 0.0, rtol=0.0, atol=1e-12)] = 0.0  # 1 - 2/3 - 1/3 is not 0 in floats
    k = int(np.flatnonzero(diff <= 0)[0])
    if diff[k] == 0:
        return float(p_fa[k]), float(thresholds[k])
    # the crossing lies between ROC points k-1 (diff > 0) and k (diff < 0)
    w = diff[k - 1] / (diff[k - 1] - diff[k])
    rate = p_fa[k - 1] + w * (p_fa[k] - p_fa[k - 1])
    t0, t1 = thresholds[k - 1], thresholds[k]
    threshold = t1 if not np.isfinite(t0) else t0 + w * (t1 - t0)
    return float(rate), float(threshold)


def min_dcf(scores, labels, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> tuple[float, float]:
    """(normalised minimum detection cost at ``p_target``, the threshold reaching it)."""
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    p_miss, p_fa, thresholds = error_rates(scores, labels)
    cost = c_miss * p_miss * p_target + c_fa * p_fa * (1.0 - p_target)
    k = int(np.argmin(cost))
    return float(cost[k] / min(c_miss * p_target, c_fa * (1.0 - p_target))), float(thresholds[k])


def detection_summary(scores, labels, p_targets: Sequence[float] = (0.01, 0.05)) -> dict:
    """EER (%), minDCF at each p_target, and the trial counts that bound their precision."""
    s, y = _check(scores, labels)
    rate, threshold = eer(s, y)
    out = {
        "EER": 100.0 * rate,
        "eer_threshold": threshold,
        "target_trials": int(y.sum()),
        "nontarget_trials": int((~y).sum()),
    }
    for p in p_targets:
        out[f"minDCF@{p:g}"] = min_dcf(s, y, p)[0]
    return out


__all__ = ["detection_summary", "eer", "error_rates", "min_dcf"]
