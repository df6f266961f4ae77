"""Pure measures on model outputs: losses, membership-inference AUCs, margins, divergences.

Every function takes logits/labels tensors, so it can be checked by hand on tiny inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc

from qpae.metrics.functional import unlearning_counts


def forget_and_retain_accuracy(
    forget_logits: Tensor,
    forget_labels: Tensor,
    retain_logits: Tensor,
    retain_labels: Tensor,
    forget_classes: Sequence[int],
) -> dict[str, float]:
    """``FA`` and ``RA`` (percent) of the forget and retained clips, counted together by
    qpae's metrics' functional form, so they are qpae-unlearn's numbers on the same logits."""
    counts = unlearning_counts(
        torch.cat([forget_logits, retain_logits]), torch.cat([forget_labels, retain_labels]), forget_classes
    )
    return {"FA": float(counts.forget_accuracy()), "RA": float(counts.retain_accuracy())}


def per_sample_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of each sample."""
    return F.cross_entropy(logits, labels, reduction="none")


def prediction_entropy(logits: Tensor) -> Tensor:
    """Entropy (nats) of each sample's softmax."""
    log_p = F.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def auc(member_scores: Tensor, nonmember_scores: Tensor) -> float:
    """ROC AUC of telling members (higher score) from non-members; 0.5 is chance."""
    scores = torch.cat([member_scores, nonmember_scores]).float()
    target = torch.cat([torch.ones(len(member_scores)), torch.zeros(len(nonmember_scores))]).long()
    return float(binary_auroc(scores, target))


def loss_auc(loss_train: Tensor, loss_test: Tensor) -> float:
    """AUC with which a low loss marks forget-*train* clips against forget-*test* clips of the
    same class. The target is the retrained model's value, not 0.5: far below it also leaks."""
    return auc(-loss_train, -loss_test)


class ThresholdAttack:
    """A logistic-regression membership attack on (loss, entropy), trained on retained-train
    (members) vs retained-test (non-members), then applied to the forget class."""

    def __init__(self, steps: int = 200) -> None:
        self.steps = steps

    @staticmethod
    def features(logits: Tensor, labels: Tensor) -> Tensor:
        return torch.stack([per_sample_loss(logits, labels), prediction_entropy(logits)], dim=1)

    def fit(self, members: Tensor, nonmembers: Tensor) -> ThresholdAttack:
        x = torch.cat([members, nonmembers]).double()
        y = torch.cat([torch.ones(len(members)), torch.zeros(len(nonmembers))]).double()
        self.mean, self.std = x.mean(0), x.std(0).clamp_min(1e-8)
        x = (x - self.mean) / self.std
        # balance the classes: there are many more members than non-members
        weight = torch.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
        self.w = torch.zeros(x.shape[1], dtype=torch.double, requires_grad=True)
        self.b = torch.zeros((), dtype=torch.double, requires_grad=True)
        opt = torch.optim.LBFGS([self.w, self.b], max_iter=self.steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(x @ self.w + self.b, y, weight=weight)
            loss.backward()
            return loss

        opt.step(closure)
        return self

    @torch.no_grad()
    def member_probability(self, feats: Tensor) -> Tensor:
        x = (feats.double() - self.mean) / self.std
        return torch.sigmoid(x @ self.w + self.b).float()


def forget_margin(logits: Tensor, labels: Tensor) -> float:
    """Mean margin of each sample's own-class logit over its best other logit."""
    own = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf")).max(dim=1).values
    return float((own - others).mean())


def js_divergence(logits_p: Tensor, logits_q: Tensor) -> float:
    """Mean Jensen–Shannon divergence (nats, ≤ ln 2) between two models' softmax outputs."""
    p, q = F.softmax(logits_p.double(), 1), F.softmax(logits_q.double(), 1)
    m = (p + q) / 2

    def kl(a: Tensor, b: Tensor) -> Tensor:
        return (a * (a.clamp_min(1e-30).log() - b.clamp_min(1e-30).log())).sum(1)

    return float(((kl(p, m) + kl(q, m)) / 2).mean())


def label_agreement(logits_p: Tensor, logits_q: Tensor) -> float:
    """Share of samples on which two models predict the same label."""
    return float((logits_p.argmax(1) == logits_q.argmax(1)).float().mean())
