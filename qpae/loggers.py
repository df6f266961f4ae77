"""Experiment loggers qpae configures (``conf/logger/``), where Lightning's need a correction."""

from __future__ import annotations

from lightning.pytorch.loggers.wandb import WandbLogger as _LightningWandbLogger


class WandbLogger(_LightningWandbLogger):
    """Lightning's W&B logger without the ``anonymous`` argument it always passes: recent wandb
    versions warn about that setting on every run although qpae never sets it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._wandb_init.pop("anonymous", None)
