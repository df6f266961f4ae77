"""Pretraining: compose config → instantiate data, model, trainer → fit → test → export the model file."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from qpae import __version__
from qpae.checkpoints import save_model, sha256_file
from qpae.models.factory import model_from_settings
from qpae.pipeline import latest
from qpae.pipeline.config import finish_loggers, instantiate_dict, log_config
from qpae.pipeline.device import build_trainer, check_device

log = logging.getLogger(__name__)


def build_model(cfg: DictConfig, datamodule) -> torch.nn.Module:
    """The network of ``cfg.model`` sized for the datamodule's classes and feature images, built
    from qpae's own model names and settings only (as every reader of the model file will)."""
    channels, *image = datamodule.input_shape
    return model_from_settings(
        OmegaConf.to_container(cfg.model, resolve=True),
        num_classes=datamodule.num_classes,
        in_chans=channels,
        img_size=tuple(image),
        load_pretrained=True,
    )


def training_recipe(cfg: DictConfig, trainer: L.Trainer, datamodule) -> dict:
    """What `retrain` needs to train the same way: optimizer, schedule, epochs actually run."""
    module = OmegaConf.to_container(cfg.module, resolve=True)
    optimizer = module.get("optimizer") or {}
    scheduler = module.get("scheduler")
    return {
        "optimizer": {
            "name": str(optimizer.get("_target_", "")).rsplit(".", 1)[-1],
            **{k: v for k, v in optimizer.items() if not k.startswith("_")},
        },
        "scheduler": None
        if not scheduler
        else {
            "name": str(scheduler.get("_target_", "")).rsplit(".", 1)[-1],
            **{k: v for k, v in scheduler.items() if not k.startswith("_")},
        },
        "epochs": int(trainer.current_epoch),
        "max_epochs": int(cfg.trainer.max_epochs),
        "label_smoothing": float(module.get("label_smoothing", 0.0)),
        "batch_size": int(datamodule.batch_size),
    }


def pretrain(cfg: DictConfig) -> dict:
    """Train, test the best checkpoint, write the weights-only model file; return test metrics."""
    output = Path(cfg.output)
    if output.exists() and not cfg.get("overwrite", False):
        # earlier receipts name this file by hash, and later requests start from it by default
        raise FileExistsError(
            f"{output} already exists (sha256 {sha256_file(output)[:12]}…); qpae does not replace a model "
            "silently. Choose another output=…, or pass overwrite=true to replace it."
        )
    check_device(cfg.trainer)  # trainer=gpu without a GPU: refused before any data is read
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = hydra.utils.instantiate(cfg.dataset)
    datamodule.prepare_data()
    datamodule.setup("fit")
    net = build_model(cfg, datamodule)
    module = hydra.utils.instantiate(cfg.module, net=net, num_classes=datamodule.num_classes)
    loggers = instantiate_dict(cfg.get("logger"))
    trainer: L.Trainer = build_trainer(
        cfg.trainer, callbacks=instantiate_dict(cfg.get("callbacks")), logger=loggers or False
    )
    datamodule.place_on(trainer.strategy.root_device)
    log_config(loggers, cfg)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    results = trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    if "test/acc" not in metrics:  # never write a model that was not evaluated
        raise RuntimeError(f"testing gave no accuracy ({metrics}); no model file was written")
    if trainer.is_global_zero:
        meta = {
            "qpae_version": __version__,
            "model": OmegaConf.to_container(cfg.model, resolve=True),
            "data": datamodule.describe(),
            "seed": int(cfg.seed),
            "test_metrics": metrics,
            "normalisation": {"mean": datamodule.mean, "std": datamodule.std},
            "recipe": training_recipe(cfg, trainer, datamodule),
            # where copies derived from the training data stay after an unlearning request (the
            # unlearning run lists them): Lightning checkpoints carry optimizer state
            "training_artifacts": {
                "lightning_checkpoints": str(Path(trainer.checkpoint_callback.dirpath).resolve())
                if trainer.checkpoint_callback and trainer.checkpoint_callback.dirpath
                else None,
                "feature_cache": str(Path(datamodule.cache_dir).resolve()),
            },
        }
        digest = save_model(cfg.output, module.net, meta)
        log.info("wrote %s (sha256 %s); test %s", cfg.output, digest[:12], metrics)
        if cfg.get("record_latest", False):  # what `make unlearn` / `make audit` start from next
            entry = {"model": str(output.resolve()), "sha256": digest, "test_acc": metrics["test/acc"]}
            latest.record(cfg, "pretrain", entry)
    finish_loggers(loggers)
    return metrics
