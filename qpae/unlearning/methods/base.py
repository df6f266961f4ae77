"""The one interface every unlearning method implements; :class:`UnlearnModule` only calls it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from qpae.data.windows_dataset import as_batch
from qpae.unlearning.request import ForgetRequest
from qpae.unlearning.schedule import Schedule

if TYPE_CHECKING:
    from qpae.data.base import AudioDataModule

TrainOn = Literal["forget+retain", "retain", "forget"]


@dataclass
class TrainingData:
    """Read access to the training split for methods that measure before they edit (SSD,
    Fisher). Test and validation samples are not reachable from here."""

    datamodule: AudioDataModule
    request: ForgetRequest

    def forget(self, batch_size: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches of the forgotten classes' training samples, in order."""
        return self._batches(self.datamodule.forget_set(self.request.all_forgotten), batch_size)

    def retain(self, batch_size: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches of the retained classes' training samples, in order."""
        return self._batches(self.datamodule.retain_set(self.request.all_forgotten), batch_size)

    def all(self, batch_size: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches of the whole training split, in order."""
        return self._batches(self.datamodule.dataset("train"), batch_size)

    def _batches(self, dataset, batch_size: int | None) -> Iterator[tuple[Tensor, Tensor]]:
        # the store's views hand out whole batches (WindowDataset.__getitems__), collated already
        return iter(
            DataLoader(dataset, batch_size=batch_size or self.datamodule.batch_size, collate_fn=as_batch)
        )


class UnlearningMethod:
    """Hooks around a short training run of the original model.

    A method says what data it trains on (``train_on``), for how long (``epochs``; 0 for a
    one-shot edit), whether it starts from a freshly initialised network (``from_scratch``),
    and overrides any of the three hooks. ``retain_fraction`` is the share of retained
    training samples drawn afresh each epoch (1.0 = all, as the paper fine-tunes on the
    full training set). ``schedule`` (:mod:`qpae.unlearning.schedule`) decides how long a
    method that fine-tunes the original trains: ``kind="epochs"`` uses ``epochs`` and
    ``retain_fraction``; ``kind="auto"`` stops when the request is erased and retained accuracy
    has settled. One-shot methods and retrain (which follows the pretraining recipe) ignore it.
    """

    name: ClassVar[str] = "method"
    train_on: ClassVar[TrainOn] = "forget+retain"
    from_scratch: ClassVar[bool] = False

    def __init__(
        self,
        epochs: int = 5,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        retain_fraction: float = 1.0,
        schedule: Schedule | dict | None = None,
    ) -> None:
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        if not 0.0 < retain_fraction <= 1.0:
            raise ValueError(f"retain_fraction must be in (0, 1], got {retain_fraction}")
        self.epochs, self.lr, self.weight_decay = epochs, lr, weight_decay
        self.retain_fraction = retain_fraction
        if isinstance(schedule, dict):
            schedule = Schedule(**schedule)
        self.schedule = schedule or Schedule(kind="epochs")

    @property
    def auto_schedule(self) -> bool:
        """Whether this run's length is the automatic schedule's (a method that fine-tunes the
        original under ``schedule.kind="auto"``)."""
        return self.schedule.automatic and self.epochs > 0 and not self.from_scratch

    def trainer_limits(self) -> dict:
        """The Lightning ``Trainer`` arguments that bound this run."""
        if self.auto_schedule:
            return {"max_epochs": -1, "max_steps": self.schedule.max_steps}
        return {"max_epochs": self.epochs}

    def on_fit_start(self, net: nn.Module, request: ForgetRequest, data: TrainingData) -> None:
        """Edit the model before training (in place)."""

    def loss(
        self, logits: Tensor, labels: Tensor, request: ForgetRequest, features: Tensor | None = None
    ) -> Tensor:
        """The training loss of one batch (methods that train must override it). ``features``
        are the batch's penultimate (pre-logit) features, for methods that act on them."""
        raise NotImplementedError(f"{self.name} does not train (epochs must be 0)")

    def on_fit_end(self, net: nn.Module, request: ForgetRequest) -> None:
        """Edit the model after training (in place)."""

    def published_head(
        self, weight: Tensor, bias: Tensor | None, request: ForgetRequest
    ) -> tuple[Tensor, Tensor | None]:
        """The head ``on_fit_end`` would publish for these weights, computed out of place (the
        automatic schedule measures the model as it would be published). Methods whose
        ``on_fit_end`` edits more than the head must not rely on it; this default changes nothing."""
        return weight, bias

    def training_summary(self) -> dict:
        """What the run's training did that its settings do not say (e.g. an automatic λ)."""
        return {}

    def adopt_recipe(self, recipe: dict | None) -> None:
        """Take settings from the original model's pretraining recipe (methods that train from
        scratch, i.e. retrain); others ignore it."""

    def configure_optimizers(self, params):
        """What ``LightningModule.configure_optimizers`` returns."""
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

    def config(self) -> dict:
        """Plain settings for metrics.json and the receipt."""
        settings = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        settings["schedule"] = self.schedule.as_dict()
        return {"name": self.name, **settings}


def split_cross_entropy(logits: Tensor, labels: Tensor, forgotten: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy over the batch's retained and forget samples (0 where there are none)."""
    is_forget = torch.isin(labels, torch.tensor(forgotten, device=labels.device))
    ce = F.cross_entropy(logits, labels, reduction="none")
    zero = logits.new_zeros(())
    retain = ce[~is_forget].mean() if (~is_forget).any() else zero
    forget = ce[is_forget].mean() if is_forget.any() else zero
    return retain, forget
