"""Throughput benchmark: how close qpae's training loops come to what the device can do.

For each network and feature size, four loops train on FSDD's training windows and are timed the
same way (global steps after a warm-up, across epoch boundaries, the device synchronised before
the clock is read):

- ``pretrain``: qpae's pretraining loop (Lightning, ``ClassifierModule``, the data module's loader);
- ``unlearn``: qpae's unlearning loop (Lightning, ``UnlearnModule`` with QPAudioEraser, the
  forget + retained sampler);
- ``plain``: a plain PyTorch loop on tensors already on the device, at the trainer's settings
  (batch size, precision, memory format);
- ``best``: the best plain loop this benchmark knows for the device (on a GPU: bf16 autocast,
  channels_last, batch 256; on a CPU: float32, batch 256).

The ratios ``pretrain/plain``, ``unlearn/plain``, ``pretrain/best`` and ``unlearn/best`` are the
figures to read. Optionally also the feature pipeline's decode speed. Run: ``make throughput
DATA_DIR=../shared/data`` (``TRAINER=gpu`` on a GPU; settings in ``conf/throughput.yaml``).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from qpae.data.fsdd import FSDDDataModule
from qpae.data.placement import ResidentWindows
from qpae.models.classifier import ClassifierModule
from qpae.models.factory import SUPPORTED, create_model
from qpae.pipeline.device import build_trainer, has_conv2d, resolve_precision
from qpae.unlearning.methods.base import TrainingData
from qpae.unlearning.methods.qpae import QPAudioEraser
from qpae.unlearning.module import UnlearnModule
from qpae.unlearning.request import ForgetRequest

log = logging.getLogger(__name__)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that the clock reads finished steps."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer(L.Callback):
    """Samples per second of the training steps after the first ``warmup`` global steps.

    A step is a training batch (qpae accumulates no gradients, so each is an optimizer step).
    Steps are counted by the timer itself, so epochs (whose ``batch_idx`` restarts) change
    nothing; the clock is read after ``warmup`` steps and when training ends, each time after the
    device has finished its queued work (``sync``). ``clock`` and ``sync`` can be replaced (tests).
    """

    def __init__(
        self, warmup: int, clock: Callable[[], float] = time.perf_counter, sync: Callable | None = None
    ) -> None:
        if warmup < 1:
            raise ValueError(f"warmup must be >= 1 step (the first steps pay start-up costs), got {warmup}")
        self.warmup, self.clock, self.sync = warmup, clock, sync
        self.steps = self.timed_steps = self.samples = 0
        self.start: float | None = None
        self.end: float | None = None

    def _now(self, trainer) -> float:
        if self.sync is not None:
            self.sync()
        elif trainer is not None:
            synchronize(trainer.strategy.root_device)
        return self.clock()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.steps += 1
        if self.steps == self.warmup:
            self.start = self._now(trainer)
        elif self.steps > self.warmup:
            self.timed_steps += 1
            self.samples += len(batch[1])

    def on_train_end(self, trainer, module) -> None:
        if self.start is not None:
            self.end = self._now(trainer)

    @property
    def samples_per_s(self) -> float:
        if self.start is None or self.end is None or not self.timed_steps:
            raise RuntimeError(
                f"the timer saw {self.steps} steps, not more than its warm-up of {self.warmup}: raise steps"
            )
        return self.samples / (self.end - self.start)


def autocast_dtype(precision: object) -> torch.dtype | None:
    text = str(precision)
    if text.startswith("bf16"):
        return torch.bfloat16
    if text.startswith("16"):
        return torch.float16
    return None


def plain_loop(
    net: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    steps: int,
    warmup: int,
    precision: object = "32-true",
    channels_last: bool = False,
    seed: int = 0,
) -> dict:
    """A plain PyTorch training loop on tensors already on the device (``x``, ``y``): AdamW,
    cross-entropy, a fresh permutation each epoch; the same timing as :class:`StepTimer`."""
    device = x.device
    net = net.to(device)
    if channels_last and has_conv2d(net):
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    dtype = autocast_dtype(precision)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    g = torch.Generator(device="cpu").manual_seed(seed)
    timer = StepTimer(warmup, sync=partial(synchronize, device))
    net.train()
    while timer.steps < warmup + steps:
        order = torch.randperm(len(y), generator=g).to(device)
        for start in range(0, len(y), batch_size):
            if timer.steps >= warmup + steps:
                break
            idx = order[start : start + batch_size]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = F.cross_entropy(net(xb), yb)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            timer.on_train_batch_end(None, None, None, (xb, yb), start)
    timer.on_train_end(None, None)
    return {"samples_per_s": timer.samples_per_s, "batch_size": batch_size, "precision": str(precision)}


def lightning_loop(module: L.LightningModule, loader, trainer_cfg, steps: int, warmup: int) -> float:
    """Samples/s of ``module`` trained by a Lightning Trainer built from ``trainer_cfg`` (as the
    pipelines build theirs) for ``warmup + steps`` global steps."""
    timer = StepTimer(warmup)
    trainer = build_trainer(
        trainer_cfg,
        max_steps=warmup + steps,
        max_epochs=-1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tempfile.gettempdir(),
        callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=loader)
    return timer.samples_per_s


def root_device(trainer_cfg) -> torch.device:
    """The device a one-device trainer config trains on."""
    probe = build_trainer(trainer_cfg, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    return probe.strategy.root_device


def feature_pipeline(data_dir: Path) -> dict:
    """A first build of the feature store from FSDD's audio (decoding on every core)."""
    with tempfile.TemporaryDirectory() as cache_dir:
        dm = FSDDDataModule(data_dir, cache_dir=cache_dir)
        recs = dm._recordings()
        start = time.perf_counter()
        dm.prepare_data()
        seconds = time.perf_counter() - start
    return {
        "clips": len(recs),
        "threads": dm.decode_threads,
        "seconds": round(seconds, 2),
        "clips_per_s": round(len(recs) / seconds),
    }


def measure_network(
    dm: FSDDDataModule,
    network: str,
    trainer_cfg: dict,
    steps: int,
    warmup: int,
    best_batch_size: int = 256,
    repeats: int = 1,
    device: torch.device | None = None,
) -> dict:
    """The four loops of one network on one data module (already set up), ``repeats`` rounds, on
    ``device`` (the trainer config's, found by building one when not given)."""
    device = device or root_device(trainer_cfg)
    dm.place_on(device)
    shape = tuple(dm.input_shape[1:])
    precision = resolve_precision(
        trainer_cfg.get("precision", "32-true"), str(trainer_cfg.get("accelerator"))
    )
    channels_last = bool((trainer_cfg.get("speed") or {}).get("channels_last")) and device.type != "cpu"

    def net() -> torch.nn.Module:
        torch.manual_seed(0)
        return create_model(network, dm.num_classes, img_size=shape)

    out: dict = {"network": network, "input": [1, *shape], "batch_size": dm.batch_size, "repeats": repeats}
    train = ResidentWindows(dm.dataset("train"), device)  # float32 on the device, as a plain loop holds it
    x, y = train.__getitems__(np.arange(len(train)))
    del train
    best_precision = (
        "bf16-mixed"
        if device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
        else "32-true"
    )
    request = ForgetRequest((0,), dm.num_classes)
    loops = {
        "pretrain": lambda: lightning_loop(
            ClassifierModule(net(), dm.num_classes, optimizer=partial(torch.optim.AdamW, lr=1e-3)),
            dm.train_dataloader(),
            trainer_cfg,
            steps,
            warmup,
        ),
        "unlearn": lambda: lightning_loop(
            UnlearnModule(net(), QPAudioEraser(), request, TrainingData(dm, request)),
            dm.unlearning_loader([0]),
            trainer_cfg,
            steps,
            warmup,
        ),
        "plain": lambda: plain_loop(net(), x, y, dm.batch_size, steps, warmup, precision, channels_last)[
            "samples_per_s"
        ],
        "best": lambda: plain_loop(
            net(), x, y, best_batch_size, steps, warmup, best_precision, device.type == "cuda"
        )["samples_per_s"],
    }
    # interleaved rounds, the best of each loop kept (as timeit does): a shared machine's noise
    # only ever slows a loop down, and interleaving spreads slow spells over every loop
    for _ in range(repeats):
        for name, loop in loops.items():
            out[name] = max(out.get(name, 0.0), loop())
    out["best_settings"] = {
        "batch_size": best_batch_size,
        "precision": best_precision,
        "channels_last": device.type == "cuda",
    }
    for loop in ("pretrain", "unlearn"):
        out[f"{loop}_vs_plain"] = round(out[loop] / out["plain"], 3)
        out[f"{loop}_vs_best"] = round(out[loop] / out["best"], 3)
    for key in ("pretrain", "unlearn", "plain", "best"):
        out[key] = round(out[key], 1)
    dm.drop_device_copies()
    with contextlib.suppress(Exception):
        torch.cuda.empty_cache()
    return out


def measure(
    data_dir: str | Path,
    trainer_cfg: dict,
    networks: Sequence[str] = ("resnet18",),
    sizes: Sequence = ("native",),
    steps: int = 20,
    warmup: int = 5,
    batch_size: int = 64,
    best_batch_size: int = 256,
    decode: bool = True,
    repeats: int = 1,
) -> dict:
    """Every loop for every network and size on FSDD at ``data_dir``; samples/s and ratios."""
    unknown = [n for n in networks if n not in SUPPORTED or n == "ge2e"]  # ge2e reads its own front end
    if unknown:
        raise ValueError(
            f"networks {unknown} are not image models qpae benchmarks; use some of: resnet18, "
            "vit_tiny_patch16_224, qpae_small_cnn"
        )
    for size in sizes:
        if str(size) != "native" and not (str(size).isdigit() and int(size) >= 16):
            raise ValueError(f"sizes: each is `native` or a square side in pixels (>= 16), got {size!r}")
    if steps < 1 or warmup < 1 or repeats < 1:
        raise ValueError(f"steps, warmup and repeats must be >= 1, got {steps}, {warmup}, {repeats}")
    data_dir = Path(data_dir)
    device = root_device(trainer_cfg)
    report: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "trainer": {k: v for k, v in trainer_cfg.items() if k in ("accelerator", "precision", "speed")},
        "steps": steps,
        "warmup": warmup,
        "repeats": repeats,
    }
    if decode:
        report["feature_pipeline"] = feature_pipeline(data_dir)
    rows = []
    with tempfile.TemporaryDirectory() as cache_dir:
        for size in sizes:
            resize = None if str(size) == "native" else (int(size), int(size))
            dm = FSDDDataModule(
                data_dir, cache_dir=cache_dir, features={"resize": resize}, batch_size=batch_size
            )
            dm.prepare_data()
            dm.setup()
            for network in networks:
                log.info("throughput: %s at %s on %s", network, size, device)
                rows.append(
                    {
                        "size": str(size),
                        **measure_network(
                            dm, network, trainer_cfg, steps, warmup, best_batch_size, repeats, device
                        ),
                    }
                )
    report["training"] = rows
    return report


def table(report: dict) -> str:
    """The report's training rows as a Markdown table."""
    lines = [
        "| network | size | pretrain | unlearn | plain | best | pretrain/plain | unlearn/plain | pretrain/best | unlearn/best |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["training"]:
        lines.append(
            f"| {r['network']} | {r['size']} | {r['pretrain']:,.0f} | {r['unlearn']:,.0f} | {r['plain']:,.0f} | "
            f"{r['best']:,.0f} | {r['pretrain_vs_plain']:.2f} | {r['unlearn_vs_plain']:.2f} | "
            f"{r['pretrain_vs_best']:.2f} | {r['unlearn_vs_best']:.2f} |"
        )
    return "\n".join(lines)


__all__ = ["StepTimer", "lightning_loop", "measure", "plain_loop", "table"]
