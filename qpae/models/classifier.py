"""The pretraining LightningModule: a backbone, cross-entropy, torchmetrics accuracy per split."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy

from qpae.models.ecapa import margin_logits


class ClassifierModule(L.LightningModule):
    """Trains ``net`` (any model with timm's head API) as a K-way classifier.

    Args:
        net: the backbone with its head, built by :func:`qpae.models.factory.create_model`.
        num_classes: K.
        optimizer: a partial optimizer (Hydra ``_partial_: true``) taking the parameters.
        scheduler: optional partial LR scheduler taking the optimizer.
        label_smoothing: cross-entropy label smoothing.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        # optimizer factories are Hydra partials: kept out of the checkpoint so it loads weights-only
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.label_smoothing = label_smoothing
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_best = MaxMetric()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def on_train_start(self) -> None:
        # the sanity check fills val metrics; they must not count as a real epoch
        self.val_acc.reset()
        self.val_acc_best.reset()

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str, acc) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        # an angular-margin head (ECAPA-TDNN's) trains on margin logits; metrics read the plain ones
        trained = margin_logits(self.net, logits, y) if split == "train" else logits
        loss = F.cross_entropy(trained, y, label_smoothing=self.label_smoothing)
        acc(logits, y)
        self.log(
            f"{split}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=split != "test",
            sync_dist=True,
            batch_size=len(y),
        )
        self.log(f"{split}/acc", acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val", self.val_acc)

    def on_validation_epoch_end(self) -> None:
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True, sync_dist=True)

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test", self.test_acc)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
