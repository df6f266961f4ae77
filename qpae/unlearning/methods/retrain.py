"""Retrain: the gold standard — a fresh network trained on the retained data only."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from qpae.unlearning.methods.base import UnlearningMethod
from qpae.unlearning.request import ForgetRequest

# The optimizers and schedulers a recipe may name. A recipe is read from a model file, which is
# data: it selects among these, it never names code to import.
OPTIMIZERS = {"AdamW": torch.optim.AdamW, "Adam": torch.optim.Adam, "SGD": torch.optim.SGD}
OPTIMIZER_KEYS = {"lr", "weight_decay", "momentum", "nesterov", "betas", "eps"}


class Retrain(UnlearningMethod):
    """The original model's pretraining recipe (optimizer, learning-rate schedule, number of
    epochs, label smoothing, as recorded in its model file), on retained training samples only,
    from a freshly initialised network of the same architecture. Every other method is judged by
    its distance to this model.

    ``epochs``, ``lr`` and ``weight_decay`` left at ``None`` come from the recipe; a number
    overrides it (and is recorded as such in metrics.json and the receipt).
    """

    name = "retrain"
    train_on = "retain"
    from_scratch = True

    def __init__(
        self,
        epochs: int | None = None,
        lr: float | None = None,
        weight_decay: float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(epochs=0 if epochs is None else epochs, **kwargs)
        self.overrides = {"epochs": epochs, "lr": lr, "weight_decay": weight_decay}
        self.optimizer, self.scheduler, self.label_smoothing = "AdamW", None, 0.0
        self.optimizer_settings: dict = {}
        self.recipe_adopted = False

    def adopt_recipe(self, recipe: dict | None) -> None:
        if not recipe:
            missing = [k for k, v in self.overrides.items() if v is None]
            if missing:
                raise ValueError(
                    "retrain follows the original model's pretraining recipe, but this model file records "
                    f"none (it predates recipes): re-run pretraining, or set unlearn.{'/'.join(missing)}"
                )
            recipe = {}
        optimizer = recipe.get("optimizer", {"name": "AdamW"})
        if optimizer.get("name") not in OPTIMIZERS:
            raise ValueError(f"recipe optimizer {optimizer.get('name')!r} is not one of {sorted(OPTIMIZERS)}")
        settings = {k: v for k, v in optimizer.items() if k in OPTIMIZER_KEYS}
        for key in ("lr", "weight_decay"):
            if self.overrides[key] is not None:
                settings[key] = self.overrides[key]
        epochs = self.overrides["epochs"] if self.overrides["epochs"] is not None else recipe["epochs"]
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"retrain needs at least one epoch, got {epochs!r}")
        scheduler = recipe.get("scheduler")
        if scheduler is not None and scheduler.get("name") != "CosineAnnealingLR":
            raise ValueError(f"recipe scheduler {scheduler.get('name')!r} is not supported by retrain")
        self.epochs, self.optimizer, self.optimizer_settings = epochs, optimizer["name"], settings
        self.lr = settings.get("lr", self.lr)
        self.weight_decay = settings.get("weight_decay", self.weight_decay)
        self.scheduler = dict(scheduler) if scheduler else None
        if self.scheduler and self.overrides["epochs"] is not None:
            self.scheduler["T_max"] = epochs  # another length: the same cosine shape over it
        self.label_smoothing = float(recipe.get("label_smoothing", 0.0))
        self.recipe_adopted = bool(recipe)

    def loss(
        self, logits: Tensor, labels: Tensor, request: ForgetRequest, features: Tensor | None = None
    ) -> Tensor:
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def configure_optimizers(self, params):
        settings = self.optimizer_settings or {"lr": self.lr, "weight_decay": self.weight_decay}
        optimizer = OPTIMIZERS[self.optimizer](params, **settings)
        if self.scheduler is None:
            return optimizer
        t_max = int(self.scheduler.get("T_max", self.epochs))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, t_max))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
