"""QPAudioEraser (arXiv 2507.22208): the four phases, each switchable for the paper's ablation."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from qpae.models.factory import classifier_head, features_and_logits
from qpae.unlearning import phases
from qpae.unlearning.balance import LAMBDA_RULES, lambda_for_batch
from qpae.unlearning.feature_erasure import class_centroids, feature_erasure_loss
from qpae.unlearning.methods.base import TrainingData, UnlearningMethod
from qpae.unlearning.request import ForgetRequest


class QPAudioEraser(UnlearningMethod):
    """Phase 1 at fit start, phases 2–3 as the loss, phase 4 at fit end.

    Args:
        phi: interference phase (π negates the forget rows, scaled by 1/√2).
        lambda_: weight of the entropy term on forget samples (λ = 2 wrecks retained
            accuracy on ResNet18, per the paper). With ``lambda_rule="balanced"`` (qpae's default)
            it is a ceiling: :mod:`qpae.unlearning.balance` lowers it, batch by batch, until the
            entropy term's pull on the logits is no stronger than the retained cross-entropy's.
            ``lambda_rule="fixed"`` is the paper's.
        alpha: entanglement coupling α (paper: 0.2–0.5).
        mixing_form: phase 4's form, one of :data:`~qpae.unlearning.phases.MIXING_FORMS`:
            ``paper`` (``W ← M·W``), ``centred``, or ``anchored`` (qpae's default: retained rows never
            move, so a sequence of requests does not wear the model down; README).
        mix_bias: also mix the bias with M. The paper mixes W only; default False.
        weight_transform / uncertainty / mixing: switch phases off for the ablation.
            Without the uncertainty term the loss is cross-entropy to the superposition
            targets (λ = 0).
        feature_erasure: qpae's own extension, off by default (not in the paper). Adds
            ``feature_weight`` × :func:`~qpae.unlearning.feature_erasure.feature_erasure_loss`
            to phase 3: forget samples' penultimate features are pulled into the cluster of the
            retained class the model ranks first for them, as a model retrained without the
            speaker would place them.
    """

    name = "qpae"
    train_on = "forget+retain"

    def __init__(
        self,
        phi: float = math.pi,
        lambda_: float = 1.0,
        alpha: float = 0.5,
        mix_bias: bool = False,
        weight_transform: bool = True,
        uncertainty: bool = True,
        mixing: bool = True,
        feature_erasure: bool = False,
        feature_weight: float = 10.0,
        mixing_form: str = "anchored",
        lambda_rule: str = "balanced",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        # the phases' own checks, now: before any training rather than at fit start or end
        phases.check_phi(phi)
        phases.check_lambda(lambda_)
        phases.check_alpha(alpha)
        if mixing_form not in phases.MIXING_FORMS:
            raise ValueError(
                f"mixing_form must be one of {', '.join(phases.MIXING_FORMS)}; got {mixing_form!r}"
            )
        if lambda_rule not in LAMBDA_RULES:
            raise ValueError(f"lambda_rule must be one of {', '.join(LAMBDA_RULES)}; got {lambda_rule!r}")
        if not (math.isfinite(feature_weight) and feature_weight >= 0):
            raise ValueError(f"feature_weight must be finite and >= 0, got {feature_weight}")
        self.phi, self.lambda_, self.alpha, self.mix_bias = phi, lambda_, alpha, mix_bias
        self.weight_transform, self.uncertainty, self.mixing = weight_transform, uncertainty, mixing
        self.feature_erasure, self.feature_weight = feature_erasure, feature_weight
        self.mixing_form, self.lambda_rule = mixing_form, lambda_rule
        self._centroids: Tensor | None = None
        self._lambdas: list[float] = []

    def on_fit_start(self, net: nn.Module, request: ForgetRequest, data: TrainingData | None = None) -> None:
        if self.feature_erasure:
            if data is None:
                raise ValueError("feature_erasure needs the training data")
            self._centroids = retained_centroids(net, data, request.num_classes)
        if self.weight_transform:
            head = classifier_head(net)
            weight, bias = phases.destructive_interference(
                head.weight, head.bias, request.forget_classes, self.phi
            )
            with torch.no_grad():
                head.weight.copy_(weight)
                if bias is not None:
                    head.bias.copy_(bias)

    def loss(
        self, logits: Tensor, labels: Tensor, request: ForgetRequest, features: Tensor | None = None
    ) -> Tensor:
        lam = self.lambda_ if self.uncertainty else 0.0
        if lam and self.lambda_rule == "balanced":
            lam = lambda_for_batch(logits, labels, request.all_forgotten, lam)
        self._lambdas.append(lam)
        loss = phases.uncertainty_loss(logits, labels, request.all_forgotten, lam)
        if self.feature_erasure:
            if features is None or self._centroids is None:
                raise ValueError("feature_erasure needs the batch features and on_fit_start's centroids")
            loss = loss + self.feature_weight * feature_erasure_loss(
                features, logits, labels, self._centroids, request.all_forgotten
            )
        return loss

    @torch.no_grad()
    def on_fit_end(self, net: nn.Module, request: ForgetRequest) -> None:
        head = classifier_head(net)
        weight, bias = self.published_head(head.weight, head.bias, request)
        head.weight.copy_(weight)
        if bias is not None:
            head.bias.copy_(bias)

    def published_head(
        self, weight: Tensor, bias: Tensor | None, request: ForgetRequest
    ) -> tuple[Tensor, Tensor | None]:
        """Phase 4 on the head, out of place (``on_fit_end`` copies the result in)."""
        if not self.mixing:
            return weight, bias
        protected = request.previously_forgotten
        if self.mix_bias and bias is not None:
            return phases.entanglement_mixing(
                weight, request.forget_classes, self.alpha, protected, bias=bias, form=self.mixing_form
            )
        mixed = phases.entanglement_mixing(
            weight, request.forget_classes, self.alpha, protected, form=self.mixing_form
        )
        return mixed, bias

    def training_summary(self) -> dict:
        """The λ actually applied (mean, min, max over the run's batches)."""
        if not self._lambdas:
            return {}
        lams = self._lambdas
        return {"lambda_applied": {"mean": sum(lams) / len(lams), "min": min(lams), "max": max(lams)}}


@torch.no_grad()
def retained_centroids(net: nn.Module, data: TrainingData, num_classes: int) -> Tensor:
    """Per-class mean penultimate features of the retained training samples, in eval mode."""
    was_training, device = net.training, next(net.parameters()).device
    net.eval()
    feats, labels = [], []
    for x, y in data.retain():
        feats.append(features_and_logits(net, x.to(device))[0])
        labels.append(y.to(device))
    net.train(was_training)
    return class_centroids(torch.cat(feats), torch.cat(labels), num_classes)
