"""Few-shot re-identification probes on frozen penultimate features.

The attacker holds a few clips of the person: with all retained training samples plus k of
the forgotten speaker's clips, can a linear probe (or a nearest centroid) re-identify them?
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def fit_linear_probe(
    x: Tensor, y: Tensor, num_classes: int, weight_decay: float = 1e-3, steps: int = 100
) -> tuple[Tensor, Tensor]:
    """Multinomial logistic regression (L-BFGS) on standardised features; returns (W, b)
    acting on the *standardised* inputs, plus the standardisation folded in."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = ((x - mean) / std).double()
    w = torch.zeros(x.shape[1], num_classes, dtype=torch.double, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.double, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z @ w + b, y) + weight_decay * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w_eff = (w.detach() / std.double()[:, None]).float()
    return w_eff, (b.detach() - (mean.double() / std.double()) @ w.detach()).float()


def nearest_centroid_logits(train_x: Tensor, train_y: Tensor, test_x: Tensor, num_classes: int) -> Tensor:
    """Cosine similarity of each test feature to each class's mean training feature."""
    centroids = torch.zeros(num_classes, train_x.shape[1])
    centroids.index_add_(0, train_y, F.normalize(train_x, dim=1))
    return F.normalize(test_x, dim=1) @ F.normalize(centroids, dim=1).T


def few_shot_probe(
    retain_x: Tensor,
    retain_y: Tensor,
    forget_train_x: Tensor,
    forget_train_y: Tensor,
    forget_test_x: Tensor,
    forget_test_y: Tensor,
    num_classes: int,
    k: int = 3,
    draws: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """Probe accuracy and mean own-class probability on forget-test, with k forget-train clips
    per forget class in the probe's training set (mean over ``draws`` random draws)."""
    g = torch.Generator().manual_seed(seed)
    linear_acc, linear_p, centroid_acc = [], [], []
    for _ in range(draws):
        shots = torch.cat(
            [
                torch.nonzero(forget_train_y == c).flatten()[
                    torch.randperm(int((forget_train_y == c).sum()), generator=g)[:k]
                ]
                for c in forget_train_y.unique()
            ]
        )
        x = torch.cat([retain_x, forget_train_x[shots]])
        y = torch.cat([retain_y, forget_train_y[shots]])
        w, b = fit_linear_probe(x, y, num_classes)
        probs = F.softmax(forget_test_x @ w + b, dim=1)
        linear_acc.append(float((probs.argmax(1) == forget_test_y).float().mean()))
        linear_p.append(float(probs.gather(1, forget_test_y[:, None]).mean()))
        sims = nearest_centroid_logits(x, y, forget_test_x, num_classes)
        centroid_acc.append(float((sims.argmax(1) == forget_test_y).float().mean()))
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    return {
        "probe_acc": mean(linear_acc),
        "probe_p_forget": mean(linear_p),
        "centroid_acc": mean(centroid_acc),
    }
