"""Throughput benchmark: feature pipeline (decode + log-mel into the store) and training.

Compares a Lightning epoch with a plain PyTorch loop over the same data, and a plain loop fed by
the feature store (memory-mapped shards) with one fed by the same windows held in RAM as tensors
(what qpae did before the store), so that the data pipeline is shown not to be the bottleneck. Run: ``make throughput DATA_DIR=../shared/data``
(``qpae-throughput``; settings in ``conf/throughput.yaml``).
"""

from __future__ import annotations

import tempfile
import time
from functools import partial
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from qpae.data.fsdd import FSDDDataModule
from qpae.models.classifier import ClassifierModule
from qpae.models.factory import create_model


class StepTimer(L.Callback):
    """Wall time of training steps after ``warmup`` steps."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.samples = warmup, None, None, 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.warmup - 1:
            self.start = time.perf_counter()
        elif batch_idx >= self.warmup:
            self.samples += len(batch[1])
            self.end = time.perf_counter()


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


def plain_loop(model: str, dm, steps: int, warmup: int, loader=None) -> float:
    torch.manual_seed(0)
    net = create_model(model, dm.num_classes, img_size=dm.input_shape[1:])
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net.train()
    loader, n, start = loader or dm.train_dataloader(), 0, None
    for i, (x, y) in enumerate(loader):
        if i == steps:
            break
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()
        if i == warmup - 1:
            start = time.perf_counter()
        elif i >= warmup:
            n += len(y)
    return n / (time.perf_counter() - start)


def lightning_loop(model: str, dm, steps: int, warmup: int) -> float:
    torch.manual_seed(0)
    net = create_model(model, dm.num_classes, img_size=dm.input_shape[1:])
    module = ClassifierModule(net, dm.num_classes, optimizer=partial(torch.optim.AdamW, lr=1e-3))
    timer = StepTimer(warmup)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=dm.train_dataloader())
    return timer.samples / (timer.end - timer.start)


def measure(data_dir: str | Path, model: str = "resnet18", steps: int = 25, warmup: int = 5) -> dict:
    """Feature-pipeline speed on FSDD at ``data_dir``, and training samples/s of a Lightning epoch
    vs a plain PyTorch loop over the same cached tensors (their ratio is the figure to read)."""
    data_dir = Path(data_dir)
    report = {"feature_pipeline": feature_pipeline(data_dir)}
    with tempfile.TemporaryDirectory() as cache_dir:
        dm = FSDDDataModule(data_dir, cache_dir=cache_dir)
        dm.setup()
        plain = plain_loop(model, dm, steps, warmup)
        light = lightning_loop(model, dm, steps, warmup)
        x, y = dm.dataset("train").tensors  # the training windows in RAM, as before the store
        in_ram = DataLoader(
            TensorDataset(x, y),
            batch_size=dm.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(dm.order_seed),
        )
        ram = plain_loop(model, dm, steps, warmup, loader=in_ram)
    report["training"] = {
        "model": model,
        "batch_size": dm.batch_size,
        "threads": torch.get_num_threads(),
        "plain_samples_per_s": round(plain, 1),
        "lightning_samples_per_s": round(light, 1),
        "lightning_vs_plain": round(light / plain, 3),
        "in_ram_samples_per_s": round(ram, 1),
        "store_vs_in_ram": round(plain / ram, 3),
    }
    return report
