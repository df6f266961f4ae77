"""QPAudioEraser (arXiv 2507.22208): the four phases, each switchable for the paper's ablation."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from qpae.models.factory import classifier_head
from qpae.unlearning import phases
from qpae.unlearning.methods.base import TrainingData, UnlearningMethod
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
    """

    name = "qpae"
    train_on = "forget+retain"

    def __init__(self, phi: float = math.pi, lambda_: float = 1.0, alpha: float = 0.5,
                 mix_bias: bool = False, weight_transform: bool = True, uncertainty: bool = True,
                 mixing: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.phi, self.lambda_, self.alpha, self.mix_bias = phi, lambda_, alpha, mix_bias
        self.weight_transform, self.uncertainty, self.mixing = weight_transform, uncertainty, mixing

    @torch.no_grad()
    def on_fit_start(self, net: nn.Module, request: ForgetRequest, data: TrainingData | None = None) -> None:
        if self.weight_transform:
            head = classifier_head(net)
            weight, bias = phases.destructive_interference(
                head.weight, head.bias, request.forget_classes, self.phi
            )
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
