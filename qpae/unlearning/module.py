"""UnlearnModule: the Lightning hooks of an unlearning run; the method decides what they do."""

from __future__ import annotations

import math
import time

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from qpae.metrics.unlearning import unlearning_metrics
from qpae.models.ecapa import margin_logits
from qpae.models.factory import features_and_logits
from qpae.unlearning.methods.base import TrainingData, UnlearningMethod
from qpae.unlearning.request import ForgetRequest


class NonFiniteLossError(FloatingPointError):
    """The unlearning loss became NaN or infinite; the run stops and writes nothing."""


class UnlearnModule(L.LightningModule):
    """Fine-tunes ``net`` under ``method`` for ``request``.

    ``on_fit_start`` → ``method.on_fit_start`` (QPAudioEraser: phase 1), ``training_step`` →
    ``method.loss`` (phases 2–3), ``on_fit_end`` → ``method.on_fit_end`` (phase 4). Testing
    measures the seven unlearning metrics on whatever weights the net has at that moment, so
    ``trainer.test`` before ``fit`` measures the original model.
    """

    def __init__(
        self,
        net: nn.Module,
        method: UnlearningMethod,
        request: ForgetRequest,
        data: TrainingData | None = None,
    ) -> None:
        super().__init__()
        self.net, self.method, self.request, self.data = net, method, request, data
        self.timings: dict[str, float] = {}
        self.eval_tag = "before"
        self.fa_before: float | None = None
        self.test_metrics = unlearning_metrics(request.all_forgotten)
        self.class_acc = MulticlassAccuracy(request.num_classes, average="none")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def start_evaluation(self, tag: str, fa_before: float | None = None) -> None:
        """Fresh metrics for the next ``trainer.test``, logged under ``tag/``."""
        self.eval_tag = tag
        metrics = unlearning_metrics(self.request.all_forgotten, fa_before=fa_before)
        self.test_metrics = metrics.to(self.device)
        self.class_acc.reset()

    # --- the unlearning run ---------------------------------------------------------------
    def on_fit_start(self) -> None:
        start = time.perf_counter()
        self.method.on_fit_start(self.net, self.request, self.data)
        self.timings["fit_start_s"] = time.perf_counter() - start
        self._train_started = time.perf_counter()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        features, logits = features_and_logits(self.net, x)
        if self.method.from_scratch:  # retrain replays pretraining: an AAM head's margin too
            logits = margin_logits(self.net, logits, y)
        loss = self.method.loss(logits, y, self.request, features)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"{self.method.name}: loss is {loss.item()} at epoch {self.current_epoch}, batch "
                f"{batch_idx}; nothing was written. Lower the learning rate or lambda."
            )
        self.log("unlearn/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def on_fit_end(self) -> None:
        self.timings["train_s"] = time.perf_counter() - self._train_started
        start = time.perf_counter()
        self.method.on_fit_end(self.net, self.request)
        self.timings["fit_end_s"] = time.perf_counter() - start

    def configure_optimizers(self):
        return self.method.configure_optimizers(self.net.parameters())

    # --- measuring ------------------------------------------------------------------------
    def test_dataloader(self):
        """The test split, built when Lightning asks for it: under DDP that is after the process
        group exists, so each process gets its own share without padding duplicates."""
        if self.data is None:
            raise RuntimeError("UnlearnModule needs its TrainingData to build the test loader")
        return self.data.datamodule.test_dataloader()

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        self.test_metrics.update(logits, y)
        self.class_acc.update(logits, y)

    def on_test_epoch_end(self) -> None:
        values = {k: float(v) for k, v in self.test_metrics.compute().items()}
        per_class = self.class_acc.compute()
        for c in self.request.all_forgotten:
            values[f"FA_class{c}"] = 100.0 * float(per_class[c])
        self.log_dict({f"{self.eval_tag}/{k}": v for k, v in values.items() if not math.isnan(v)})
        self.last_evaluation = values
