"""QPAudioEraser (arXiv 2507.22208): the four phases, each switchable for the paper's ablation."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from qpae.models.factory import classifier_head
from qpae.unlearning import phases
from qpae.unlearning.methods.base import TrainingData, UnlearningMethod
from qpae.unlearning.methods.ssd import dampen, importances
from qpae.unlearning.request import ForgetRequest


class QPAudioEraser(UnlearningMethod):
    """Phase 1 at fit start, phases 2–3 as the loss, phase 4 at fit end.

    Args:
        phi: interference phase (π negates the forget rows, scaled by 1/√2).
        lambda_: weight of the entropy term on forget samples (λ = 2 wrecks retained
            accuracy on ResNet18, per the paper).
        alpha: entanglement coupling α (paper: 0.2–0.5).
        mix_bias: also mix the bias with M. The paper mixes W only; default False.
        weight_transform / uncertainty / mixing: switch phases off for the ablation.
            Without the uncertainty term the loss is cross-entropy to the superposition
            targets (λ = 0).
        backbone_dampening: qpae's own extension, off by default (not in the paper). Phases 1
            and 4 touch only the head, so the backbone keeps the speaker's features and a
            few-shot probe can re-identify them. With this on, fit start first dampens the
            backbone parameters that matter far more to the forget set than to the whole
            training set (SSD's rule: I_f > dampening_alpha · I_D, scaled by
            min(dampening_lambda · I_D / I_f, 1)); the uncertainty training then repairs
            retained accuracy.
    """

    name = "qpae"
    train_on = "forget+retain"

    def __init__(self, phi: float = math.pi, lambda_: float = 1.0, alpha: float = 0.5,
                 mix_bias: bool = False, weight_transform: bool = True, uncertainty: bool = True,
                 mixing: bool = True, backbone_dampening: bool = False,
                 dampening_alpha: float = 10.0, dampening_lambda: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.phi, self.lambda_, self.alpha, self.mix_bias = phi, lambda_, alpha, mix_bias
        self.weight_transform, self.uncertainty, self.mixing = weight_transform, uncertainty, mixing
        self.backbone_dampening = backbone_dampening
        self.dampening_alpha, self.dampening_lambda = dampening_alpha, dampening_lambda

    def on_fit_start(self, net: nn.Module, request: ForgetRequest,
                     data: TrainingData | None = None) -> None:
        if self.backbone_dampening:
            if data is None:
                raise ValueError("backbone_dampening needs the training data")
            dampen_backbone(net, data, self.dampening_alpha, self.dampening_lambda)
        if self.weight_transform:
            head = classifier_head(net)
            weight, bias = phases.destructive_interference(
                head.weight, head.bias, request.forget_classes, self.phi
            )
            with torch.no_grad():
                head.weight.copy_(weight)
                if bias is not None:
                    head.bias.copy_(bias)

    def loss(self, logits: Tensor, labels: Tensor, request: ForgetRequest) -> Tensor:
        lam = self.lambda_ if self.uncertainty else 0.0
        return phases.uncertainty_loss(logits, labels, request.all_forgotten, lam)

    @torch.no_grad()
    def on_fit_end(self, net: nn.Module, request: ForgetRequest) -> None:
        if not self.mixing:
            return
        head = classifier_head(net)
        protected = request.previously_forgotten
        if self.mix_bias and head.bias is not None:
            weight, bias = phases.entanglement_mixing(
                head.weight, request.forget_classes, self.alpha, protected, bias=head.bias
            )
            head.bias.copy_(bias)
        else:
            weight = phases.entanglement_mixing(head.weight, request.forget_classes, self.alpha, protected)
        head.weight.copy_(weight)


def dampen_backbone(net: nn.Module, data: TrainingData, alpha: float, lambda_: float) -> None:
    """SSD's dampening restricted to the backbone (the head is left to phases 1 and 4)."""
    head_ids = {id(p) for p in classifier_head(net).parameters()}
    i_all, i_forget = importances(net, data.all()), importances(net, data.forget())
    with torch.no_grad():
        for n, p in net.named_parameters():
            if id(p) not in head_ids and n in i_all:
                p.copy_(dampen(p, i_all[n], i_forget[n], alpha, lambda_))
