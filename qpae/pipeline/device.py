"""The trainer a run asked for, checked before any work and built with the device's speed settings.

``trainer=gpu`` (conf/trainer/gpu.yaml) asks for bf16 mixed precision, channels_last CNNs and,
optionally, ``torch.compile``; its ``speed`` node carries the last two (they are not Trainer
arguments: :func:`accelerated_trainer`, the profile's ``_target_``, turns them into a callback). On a GPU without bf16 the precision falls back to fp16 with a gradient scaler, said
in the log; without a GPU the run is refused at once, naming ``trainer=cpu``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import hydra
import lightning as L
import torch
from omegaconf import DictConfig
from torch import nn

log = logging.getLogger(__name__)

GPU_ACCELERATORS = ("gpu", "cuda")


class DeviceError(RuntimeError):
    """The trainer asks for a device this machine does not have."""


def check_device(trainer_cfg: DictConfig | Mapping) -> None:
    """Refuse a GPU trainer on a machine without one, before data is read or a model built."""
    accelerator = str(trainer_cfg.get("accelerator", "cpu")).lower()
    if accelerator in GPU_ACCELERATORS and not torch.cuda.is_available():
        raise DeviceError(
            f"trainer=gpu (accelerator={accelerator}) needs a CUDA GPU, and torch sees none here "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}): run with trainer=cpu, "
            "or on a machine whose `nvidia-smi` lists a GPU"
        )


def resolve_precision(precision, accelerator: str) -> object:
    """bf16 where the GPU computes it natively; fp16 with a gradient scaler otherwise (logged)."""
    text = str(precision)
    gpu_bf16 = accelerator in GPU_ACCELERATORS and text.startswith("bf16") and torch.cuda.is_available()
    # including_emulation=False: a V100 or T4 "supports" bf16 only by emulating it, slowly
    if gpu_bf16 and not torch.cuda.is_bf16_supported(including_emulation=False):
        fallback = "16-mixed"
        log.warning(
            "this GPU (%s) has no native bf16: precision %s falls back to %s (fp16 with a gradient scaler)",
            torch.cuda.get_device_name(),
            text,
            fallback,
        )
        return fallback
    return precision


def has_conv2d(net: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in net.modules())


class DeviceSpeed(L.Callback):
    """channels_last weights for CNNs on an accelerator, and ``torch.compile`` when asked.

    Inputs need no conversion: a [B, 1, H, W] log-mel batch has one channel, so its channels_last
    and contiguous layouts are the same memory. Compilation is in place (``nn.Module.compile``), so
    state_dict keys, and so model files, are unchanged.
    """

    def __init__(self, channels_last: bool = True, compile: bool = False) -> None:
        self.channels_last, self.compile = channels_last, compile
        self._done: set[int] = set()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if id(pl_module) in self._done:
            return
        self._done.add(id(pl_module))
        on_accelerator = trainer.strategy.root_device.type != "cpu"
        if self.channels_last and on_accelerator and has_conv2d(pl_module):
            pl_module.to(memory_format=torch.channels_last)
        if self.compile:
            net = getattr(pl_module, "net", pl_module)
            net.compile()
            log.info(
                "compiled %s's forward with torch.compile (the first steps are slower); unlearning methods that "
                "read features (forward_features/forward_head) train uncompiled",
                type(net).__name__,
            )


def accelerated_trainer(
    speed: Mapping | None = None,
    callbacks: list | None = None,
    precision: object = "32-true",
    accelerator: str = "auto",
    **kwargs,
) -> L.Trainer:
    """A Lightning Trainer for an accelerator (``conf/trainer/gpu.yaml``'s ``_target_``): its
    ``speed`` settings become a :class:`DeviceSpeed` callback, and bf16 falls back to fp16 with a
    gradient scaler on a GPU without native bf16."""
    callbacks = list(callbacks or [])
    if speed:
        callbacks.append(DeviceSpeed(**speed))
    return L.Trainer(
        callbacks=callbacks or None,
        precision=resolve_precision(precision, str(accelerator).lower()),
        accelerator=accelerator,
        **kwargs,
    )


def build_trainer(trainer_cfg: DictConfig | Mapping, **overrides) -> L.Trainer:
    """The Trainer a ``trainer`` config describes, after :func:`check_device`."""
    check_device(trainer_cfg)
    return hydra.utils.instantiate(trainer_cfg, **overrides)


__all__ = [
    "DeviceError",
    "DeviceSpeed",
    "accelerated_trainer",
    "build_trainer",
    "check_device",
    "resolve_precision",
]
