"""How long an unlearning method trains: the paper's fixed epochs, or qpae's automatic schedule.

``kind="epochs"`` (``schedule=paper``): the method's ``epochs`` over the forget samples plus a
``retain_fraction`` of the retained ones per epoch, as the paper (E = 5, all of the data).

``kind="auto"`` (``schedule=auto``, qpae's default): each epoch is every forget training clip plus a
fresh random draw of ``retain_per_forget`` retained clips per forget clip of the request, so the
cost follows the request, not the corpus. Every ``check_every`` steps :class:`ConvergenceMonitor`
measures FA on the forgotten classes' training clips and accuracy on a held-out slice of retained
validation clips (both at most ``probe_size``); training stops once FA is 0 and the retained
accuracy has plateaued — its best value has not risen by more than ``tolerance`` points (at least
one held-out clip) over the last ``patience`` checks, as Lightning's early stopping with
``min_delta`` — or at
``max_steps``. A run whose published model (after every phase) still recognises a forget
training clip is refused: no model is written (:class:`NotErasedError`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qpae.data.windows_dataset import WindowDataset, count, take
from qpae.metrics.functional import forget_accuracy, retain_accuracy
from qpae.models.factory import classifier_head, features_and_logits

HeadView = Callable[[Tensor, "Tensor | None"], "tuple[Tensor, Tensor | None]"]

__all__ = ["SCHEDULE_KINDS", "ConvergenceMonitor", "NotErasedError", "Schedule", "plateaued"]

SCHEDULE_KINDS = ("auto", "epochs")


class NotErasedError(RuntimeError):
    """The schedule ended with forget training clips still recognised: nothing is published."""


@dataclass(frozen=True)
class Schedule:
    """Settings of an unlearning run's length (see the module docstring)."""

    kind: str = "auto"
    retain_per_forget: float = 4.0
    check_every: int = 5
    patience: int = 3
    tolerance: float = 1.0
    max_steps: int = 400
    probe_size: int = 128

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"schedule kind must be one of {', '.join(SCHEDULE_KINDS)}; got {self.kind!r}")
        if not (math.isfinite(self.retain_per_forget) and self.retain_per_forget > 0):
            raise ValueError(f"retain_per_forget must be > 0, got {self.retain_per_forget}")
        for key in ("check_every", "patience", "max_steps", "probe_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"schedule {key} must be an integer >= 1, got {value!r}")
        if not (math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise ValueError(f"schedule tolerance must be >= 0 (accuracy points), got {self.tolerance}")

    @property
    def automatic(self) -> bool:
        return self.kind == "auto"

    def as_dict(self) -> dict:
        return asdict(self)


def plateaued(values: Sequence[float], patience: int, tolerance: float) -> bool:
    """Whether the best of ``values`` has not risen by more than ``tolerance`` over the last
    ``patience`` of them (and there was a value before those to compare with). A plateau, not an
    exact repeat: a held-out accuracy of a hundred clips moves by a clip or two from check to
    check even when the model has stopped improving."""
    if len(values) < patience + 1:
        return False
    return max(values[-patience:]) <= max(values[:-patience]) + tolerance


def _subset(clips: tuple[Tensor, Tensor] | WindowDataset, size: int, seed: int) -> tuple[Tensor, Tensor]:
    """At most ``size`` of the clips as tensors (a seeded draw; all of them if there are fewer)."""
    n = count(clips)
    if n <= size:
        return take(clips, torch.arange(n))
    return take(clips, torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size])


class ConvergenceMonitor(L.Callback):
    """Measures FA (forget training clips) and retained accuracy (held-out retained clips) every
    ``check_every`` steps and stops training when the schedule's criterion holds; keeps the
    history and why it stopped."""

    def __init__(
        self,
        schedule: Schedule,
        forget: tuple[Tensor, Tensor],
        retained_heldout: tuple[Tensor, Tensor] | WindowDataset,
        seed: int = 0,
        published_head: HeadView | None = None,
    ) -> None:
        if len(forget[1]) == 0:
            raise ValueError("the automatic schedule needs forget training clips to measure FA on")
        if count(retained_heldout) == 0:
            raise ValueError("the automatic schedule needs held-out retained clips (the validation split)")
        self.schedule = schedule
        self.published_head = published_head
        self.forget = _subset(forget, schedule.probe_size, seed)
        self.forgotten = forget[1].unique()
        self.retained = _subset(retained_heldout, schedule.probe_size, seed + 1)
        # never finer than one held-out clip: a small validation split moves in whole clips
        self.tolerance = max(schedule.tolerance, 100.0 / len(self.retained[1]))
        self.history: list[dict] = []
        self.stop_reason = f"max_steps={schedule.max_steps} reached"

    @torch.no_grad()
    def measure(self, net: nn.Module, as_published: bool = True) -> tuple[float, float]:
        """(FA on the forget clips, accuracy on the retained slice), in percent, in eval mode, of
        the model as it would be published: through the method's ``published_head`` (e.g.
        QPAudioEraser's phase 4), unless ``as_published=False`` or none was given."""
        was_training = net.training
        device = next(net.parameters()).device
        head = classifier_head(net)
        view = self.published_head if as_published else None
        weight, bias = view(head.weight, head.bias) if view else (head.weight, head.bias)
        net.eval()
        try:
            forget_logits, retained_logits = (
                _logits(net, weight, bias, x, device) for x, _ in (self.forget, self.retained)
            )
        finally:
            net.train(was_training)
        # by the metrics' functional forms: the same numbers qpae-unlearn and the audit report
        fa = forget_accuracy(forget_logits, self.forget[1], self.forgotten)
        return float(fa), float(retain_accuracy(retained_logits, self.retained[1], self.forgotten))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        step = trainer.global_step
        if step % self.schedule.check_every:
            return
        fa, acc = self.measure(pl_module.net)
        self.history.append({"step": step, "FA": fa, "retained_acc": acc})
        accs = [h["retained_acc"] for h in self.history]
        done = fa == 0.0 and plateaued(accs, self.schedule.patience, self.tolerance)
        done = trainer.strategy.reduce_boolean_decision(done, all=True)
        if done:
            self.stop_reason = (
                f"converged at step {step}: FA 0 on the forget training clips, and retained held-out "
                f"accuracy ({acc:.1f}%) has not risen by more than {self.tolerance:.2g} points in "
                f"{self.schedule.patience} checks"
            )
            trainer.should_stop = True

    def summary(self) -> dict:
        return {"stop_reason": self.stop_reason, "checks": self.history}


def _logits(
    net: nn.Module, weight: Tensor, bias: Tensor | None, x: Tensor, device: torch.device, chunk: int = 256
) -> Tensor:
    """Logits through the given head, in chunks, on the CPU."""
    out = [F.linear(features_and_logits(net, c.to(device))[0], weight, bias).cpu() for c in x.split(chunk)]
    return torch.cat(out)
