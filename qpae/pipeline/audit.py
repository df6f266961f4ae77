"""The privacy audit run: is a forgotten speaker really gone? Models against retrain and a floor."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from qpae.audit import plots
from qpae.audit.inputs import audited_classes, read_checked
from qpae.audit.run import AuditSettings, audit, net_of, random_init_like
from qpae.checkpoints import save_json
from qpae.publish import OutputExistsError
from qpae.tracking import log_results

log = logging.getLogger(__name__)


def run_audit(cfg: DictConfig) -> dict:
    """Audit the configured models; write audit.json and the figures into ``output_dir``.

    Every model file is checked against the dataset (classes, split) and the forget classes are
    resolved (``forget`` names, ``forget_index`` indices) before any measurement."""
    out = Path(cfg.output_dir)
    if (out / "audit.json").exists():
        raise OutputExistsError(f"{out} already holds an audit (audit.json); choose a new output folder")
    L.seed_everything(cfg.seed, verbose=False)
    settings = AuditSettings(**OmegaConf.to_container(cfg.settings, resolve=True))
    datamodule = hydra.utils.instantiate(cfg.dataset)
    datamodule.prepare_data()
    datamodule.setup()
    paths = {"original": cfg.original, **dict(cfg.unlearned)}
    if cfg.retrain:
        paths["retrain"] = cfg.retrain
    files = read_checked(paths, datamodule)
    forget = audited_classes(
        cfg.get("forget"),
        cfg.get("forget_index"),
        datamodule.class_names,
        {name: f.meta for name, f in files.items() if name != "original"},
    )
    datamodule.require_data(forget, "the audit")
    models = {name: net_of(f) for name, f in files.items()}
    if cfg.random_init:
        models["random_init"] = random_init_like(cfg.original, cfg.seed)
    results, raws = audit(models, datamodule, forget, settings)
    names = [datamodule.class_names[c] for c in forget]
    save_json(
        out / "audit.json",
        {
            "forget_classes": list(forget),
            "forget_class_names": names,
            "models": {k: str(v) for k, v in paths.items()},
            "models_sha256": {k: f.sha256 for k, f in files.items()},
            "results": results,
        },
    )
    figures = plots.audit_figures(raws, out, settings.min_clips_per_bin)
    if cfg.wandb:
        rows = [{"model": name, **res} for name, res in results.items()]
        log_results("audit", out, {"audit": rows}, figures, {"forget_classes": list(forget)})
    for name, res in results.items():
        log.info("%-14s %s", name, " ".join(f"{k}={v:.3g}" for k, v in res.items()))
    return results
