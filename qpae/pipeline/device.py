"""The trainer a run asked for, checked before any work and built with the device's speed settings.

``trainer=gpu`` (conf/trainer/gpu.yaml) asks for bf16 mixed precision, channels_last CNNs and,
optionally, ``torch.compile``; its ``speed`` node carries the last two (they are not Trainer
arguments). On a GPU without bf16 the precision falls back to fp16 with a gradient scaler, said
in the log; without a GPU the run is refused at once, naming ``trainer=cpu``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

log = logging.getLogger(__name__)

GPU_ACCELERATORS = ("gpu", "cuda")


class DeviceError(RuntimeError):
    """The trainer asks for a device this machine does not have."""


def _plain(trainer_cfg: DictConfig | Mapping) -> dict:
    if OmegaConf.is_config(trainer_cfg):
        return OmegaConf.to_container(trainer_cfg, resolve=True)
    return dict(trainer_cfg)


def check_device(trainer_cfg: DictConfig | Mapping) -> None:
    """Refuse a GPU trainer on a machine without one, before data is read or a model built."""
    accelerator = str(_plain(trainer_cfg).get("accelerator", "cpu")).lower()
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
    if gpu_bf16 and not torch.cuda.is_bf16_supported():
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
            log.info("compiled %s with torch.compile (the first steps are slower)", type(net).__name__)


def build_trainer(trainer_cfg: DictConfig | Mapping, **overrides) -> L.Trainer:
    """A Lightning Trainer from a ``trainer`` config, its ``speed`` node turned into a callback."""
    check_device(trainer_cfg)
    settings = _plain(trainer_cfg)
    speed = settings.pop("speed", None)
    accelerator = str(settings.get("accelerator", "cpu")).lower()
    if "precision" in settings:
        settings["precision"] = resolve_precision(settings["precision"], accelerator)
    callbacks = list(overrides.pop("callbacks", None) or [])
    if speed:
        callbacks.append(DeviceSpeed(**speed))
    return hydra.utils.instantiate(settings, callbacks=callbacks or None, **overrides)


__all__ = ["DeviceError", "DeviceSpeed", "build_trainer", "check_device", "resolve_precision"]
