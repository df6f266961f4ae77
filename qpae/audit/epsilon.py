"""Per-clip ε: can an attacker tell an unlearned model from a retrained one, clip by clip?

The protocol of the NeurIPS 2023 Machine Unlearning challenge (Triantafillou et al., arXiv
2406.09073). For one clip, every model of two ensembles — N runs of the unlearning method and N
models retrained without the forgotten data — gives the clip's *logit-scaled confidence* in its
true class. An attacker who sees one model's confidence guesses which ensemble it came from with
a threshold rule; each rule's false positive and false negative rates bound the privacy loss of
an (ε, δ)-unlearning guarantee: ε ≥ log((1 − δ − FPR) / FNR) and ε ≥ log((1 − δ − FNR) / FPR).
The clip's ε is the largest over the rules. Two rule families, as in the challenge:

* **single threshold**: "positive" (the ensemble whose median confidence is higher) when the
  confidence is at least t;
* **double threshold**: "positive" (the ensemble whose confidences span the smaller range, the
  peakier one) when the confidence lies in [t_lo, t_hi].

The challenge scans thresholds on a grid of 0.01; qpae tries every threshold at which a rate
changes (each pooled confidence, each interval between two of them), so it never misses the
best rule between grid points: its ε is at least the challenge's. The challenge's other rules
are kept: a rule with exactly one of FPR, FNR at 0 says more about the sample size than the
models and is skipped; a rule with both at 0 (the ensembles are separable) and an ensemble whose
range is under 1% of the other's (a near-deterministic one) give the largest ε that N models can
show, :func:`epsilon_ceiling` — the result is then *capped*: "at least this much".

Everything here is a pure function of tensors / arrays; :mod:`qpae.audit.certify` runs it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import beta
from torch import Tensor

DELTA = 1e-5
# a clip whose ensembles' confidence ranges differ by more than 100× (the challenge's 1%) is
# treated as separable: the peakier ensemble is close to deterministic
PEAKY_RATIO = 0.01
CONFIDENCE = 0.95  # of each rule's Clopper–Pearson bound
BUCKET = 0.5  # the challenge's score: buckets of 0.5 in ε, each worth half the one before


def logit_scaled_confidence(logits: Tensor, targets: Tensor) -> Tensor:
    """log p_y − log(1 − p_y) for each row's target class y, from logits, in float64:
    z_y − logsumexp over the other classes (no softmax is formed, so it does not saturate)."""
    if logits.ndim != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(
            f"logits [n, K] and targets [n] expected, got {tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    z = logits.double()
    index = targets.long()[:, None]
    true = z.gather(1, index).squeeze(1)
    others = z.scatter(1, index, float("-inf"))
    return true - torch.logsumexp(others, dim=1)


def epsilon_ceiling(n_a: int, n_b: int, delta: float = DELTA) -> float:
    """The largest finite ε that a rule can show with ``n_a`` and ``n_b`` models: one model of
    each side on the wrong side of the threshold (FPR = 1/n_neg, FNR = 1/n_pos)."""
    if min(n_a, n_b) < 2:
        raise ValueError(f"ε needs at least 2 models on each side, got {n_a} and {n_b}")
    return max(0.0, *(math.log((1 - delta - 1 / b) * a) for a, b in ((n_a, n_b), (n_b, n_a))))


def _plugin_epsilon(
    fp: np.ndarray, fn: np.ndarray, n_neg: int, n_pos: int, delta: float, ceiling: float
) -> tuple[float, bool]:
    """The challenge's ε: the largest over rules of the ε their observed rates imply (see the
    module docstring; 0 when every rule is skipped), and whether a rule separates the ensembles
    (ε capped: "at least"). A finite ε that happens to equal the ceiling is not capped."""
    fpr, fnr = fp / n_neg, fn / n_pos
    if ((fpr == 0) & (fnr == 0)).any():
        return ceiling, True
    keep = (fpr > 0) & (fnr > 0)
    if not keep.any():
        return 0.0, False
    return float(min(max(_epsilon_of_rates(fpr[keep], fnr[keep], delta).max(), 0.0), ceiling)), False


def _epsilon_of_rates(fpr: np.ndarray, fnr: np.ndarray, delta: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        one = np.log(1 - delta - fpr) - np.log(fnr)
        two = np.log(1 - delta - fnr) - np.log(fpr)
    return np.fmax(np.nan_to_num(one, nan=-np.inf), np.nan_to_num(two, nan=-np.inf))


def upper_rate(errors: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """One-sided Clopper–Pearson upper bound of an error rate seen ``errors`` times in ``n``:
    the true rate is below it with probability at least 1 − ``alpha``."""
    return _upper_rates(n, alpha)[np.asarray(errors)]


@functools.lru_cache(maxsize=64)
def _upper_rates(n: int, alpha: float) -> np.ndarray:
    """:func:`upper_rate` for 0 … n errors (one table per n: rules only differ in counts)."""
    errors = np.arange(n + 1)
    bound = beta.ppf(1 - alpha, errors + 1, np.maximum(n - errors, 1))
    return np.where(errors >= n, 1.0, bound)


def _lower_epsilon(
    fp: np.ndarray, fn: np.ndarray, n_neg: int, n_pos: int, delta: float, confidence: float
) -> float:
    """The Clopper–Pearson ε: for each rule, the ε its error rates still imply when both are
    replaced by their upper bounds at ``confidence`` (each at half of 1 − confidence); the
    largest over rules. Each rule's value is a lower bound at that confidence; the maximum over
    rules is not (the best rule is picked on the same models: on identical Gaussian ensembles
    10–27% of clips show a value above 0 for N = 16–64), which is why every certificate runs its
    own null test. Small counts cannot fake a large value: its median on identical ensembles is
    0 at any N, and N decides the largest value it can show (:func:`lower_ceiling`)."""
    alpha = (1 - confidence) / 2
    best = _epsilon_of_rates(upper_rate(fp, n_neg, alpha), upper_rate(fn, n_pos, alpha), delta).max()
    return float(max(best, 0.0))


def lower_ceiling(n_a: int, n_b: int, delta: float = DELTA, confidence: float = CONFIDENCE) -> float:
    """The largest Clopper–Pearson ε N models can show: two perfectly separated ensembles."""
    zero = np.zeros(1, dtype=int)
    return max(_lower_epsilon(zero, zero, b, a, delta, confidence) for a, b in ((n_a, n_b), (n_b, n_a)))


def clip_epsilon(
    a: np.ndarray, b: np.ndarray, delta: float = DELTA, confidence: float = CONFIDENCE
) -> tuple[float, bool, float]:
    """One clip's confidences under the models of two ensembles (``a`` and ``b``, 1-D) →
    (the challenge's ε, whether it is capped — the ensembles are separable, so N cannot show
    more than :func:`epsilon_ceiling` — and the Clopper–Pearson ε at ``confidence``)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("confidences must be finite (a model produced NaN or infinite logits)")
    ceiling = epsilon_ceiling(len(a), len(b), delta)
    values = np.unique(np.concatenate([a, b]))

    def counts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """How many of x lie below values[k], and how many at or below it."""
        x = np.sort(x)
        return np.searchsorted(x, values, side="left"), np.searchsorted(x, values, side="right")

    rules = []  # (false positives, false negatives, negatives, positives) per rule family
    # single threshold: positive = the higher median (ties: a), predicted positive when c >= t
    pos, neg = (b, a) if np.median(b) > np.median(a) else (a, b)
    rules.append((len(neg) - counts(neg)[0], counts(pos)[0], len(neg), len(pos)))
    # double threshold: positive = the peakier ensemble, predicted positive inside [lo, hi]
    range_a, range_b = float(np.ptp(a)), float(np.ptp(b))
    pos, neg = (a, b) if range_a <= range_b else (b, a)
    (below_pos, upto_pos), (below_neg, upto_neg) = counts(pos), counts(neg)
    upper = np.triu(np.ones((len(values), len(values)), dtype=bool))  # lo = values[i] <= hi = values[j]
    inside_pos = (upto_pos[None, :] - below_pos[:, None])[upper]
    inside_neg = (upto_neg[None, :] - below_neg[:, None])[upper]
    rules.append((inside_neg, len(pos) - inside_pos, len(neg), len(pos)))

    lower = max(_lower_epsilon(fp, fn, n_neg, n_pos, delta, confidence) for fp, fn, n_neg, n_pos in rules)
    small, large = sorted((range_a, range_b))
    if large == 0:  # both ensembles constant: the same value, or separable
        plugin, capped = (0.0, False) if a[0] == b[0] else (ceiling, True)
    elif small / large < PEAKY_RATIO:
        plugin, capped = ceiling, True
    else:
        results = [_plugin_epsilon(fp, fn, n_neg, n_pos, delta, ceiling) for fp, fn, n_neg, n_pos in rules]
        plugin, capped = max(r[0] for r in results), any(r[1] for r in results)
    return plugin, capped, lower


@dataclass(frozen=True)
class Epsilons:
    """Per-clip ε of one comparison and what N allowed."""

    values: np.ndarray  # [clips] the challenge's ε
    capped: np.ndarray  # [clips] bool: at the ceiling, "at least"
    lower: np.ndarray  # [clips] the Clopper–Pearson ε (each rule bounded at `confidence`)
    ceiling: float
    lower_ceiling: float
    n: tuple[int, int]

    def summary(self) -> dict:
        v, lo = self.values, self.lower
        return {
            "clips": int(len(v)),
            "models": list(self.n),
            "median": float(np.median(v)),
            "p95": float(np.percentile(v, 95)),
            "max": float(v.max()),
            "capped_clips": int(self.capped.sum()),
            "ceiling": self.ceiling,
            "lower_median": float(np.median(lo)),
            "lower_p95": float(np.percentile(lo, 95)),
            "lower_max": float(lo.max()),
            "lower_ceiling": self.lower_ceiling,
        }


def epsilons(
    a: np.ndarray | Tensor, b: np.ndarray | Tensor, delta: float = DELTA, confidence: float = CONFIDENCE
) -> Epsilons:
    """Per-clip ε of ``a`` [models_a, clips] against ``b`` [models_b, clips] (confidences)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise ValueError(
            f"confidences [models, clips] with the same clips expected, got {a.shape} and {b.shape}"
        )
    per_clip = [clip_epsilon(a[:, i], b[:, i], delta, confidence) for i in range(a.shape[1])]
    return Epsilons(
        values=np.array([c[0] for c in per_clip]),
        capped=np.array([c[1] for c in per_clip], dtype=bool),
        lower=np.array([c[2] for c in per_clip]),
        ceiling=epsilon_ceiling(a.shape[0], b.shape[0], delta),
        lower_ceiling=lower_ceiling(a.shape[0], b.shape[0], delta, confidence),
        n=(a.shape[0], b.shape[0]),
    )


def bucket_points(n_models: int) -> list[tuple[float, float]]:
    """The challenge's buckets ``(upper edge, points)``: [0, 0.5) is worth 1, [0.5, 1) 1/2, …,
    up to ceil(log(N − 1)); an ε beyond the last bucket (or capped) is worth 0."""
    top = math.ceil(math.log(n_models - 1))
    out, edge, points = [], BUCKET, 1.0
    while edge <= top:
        out.append((edge, points))
        edge, points = edge + BUCKET, points / 2
    return out


def forget_score(eps: Epsilons) -> float:
    """The challenge's forgetting score: the mean over clips of their bucket's points (1 when
    every clip's ε is under 0.5; 0 when every clip is capped)."""
    buckets = bucket_points(min(eps.n))
    total = 0.0
    for value, capped in zip(eps.values, eps.capped, strict=True):
        if capped:
            continue
        total += next((points for edge, points in buckets if value < edge), 0.0)
    return total / len(eps.values)


def utility_factors(unlearned: dict[str, list[float]], retrained: dict[str, list[float]]) -> dict[str, float]:
    """Each utility measure (e.g. RA, test accuracy) of the unlearned ensemble as the ratio of
    its mean to the retrain ensemble's mean."""
    return {key: float(np.mean(unlearned[key]) / np.mean(retrained[key])) for key in retrained}
