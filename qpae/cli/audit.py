"""``qpae-audit``: is a forgotten speaker really gone? Audit models against retrain and a floor."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from qpae.audit import plots
from qpae.audit.run import AuditSettings, audit, load_net, random_init_like
from qpae.checkpoints import load_model, save_json
from qpae.cli.common import CONF_DIR
from qpae.tracking import log_results

log = logging.getLogger(__name__)


def run_audit(cfg: DictConfig) -> dict:
    """Audit the configured models; write audit.json and the figures into ``output_dir``."""
    L.seed_everything(cfg.seed)
    datamodule = hydra.utils.instantiate(cfg.dataset)
    datamodule.prepare_data()
    datamodule.setup()
    paths = {"original": cfg.original, **dict(cfg.unlearned)}
    if cfg.retrain:
        paths["retrain"] = cfg.retrain
    forget = (
        list(cfg.forget)
        if cfg.forget
        else sorted(
            {
                c
                for name, p in paths.items()
                if name != "original"
                for c in load_model(p)[1].get("forgotten_classes", [])
            }
        )
    )
    if not forget:
        raise ValueError("no forget classes: set forget=[...] or pass unlearned models that record them")
    models = {name: load_net(p) for name, p in paths.items()}
    if cfg.random_init:
        models["random_init"] = random_init_like(cfg.original, cfg.seed)
    results, raws = audit(
        models, datamodule, forget, AuditSettings(**OmegaConf.to_container(cfg.settings, resolve=True))
    )
    out = Path(cfg.output_dir)
    save_json(
        out / "audit.json",
        {"forget_classes": forget, "models": {k: str(v) for k, v in paths.items()}, "results": results},
    )
    figures = plots.audit_figures(raws, out)
    if cfg.wandb:
        rows = [{"model": name, **res} for name, res in results.items()]
        log_results("audit", out, {"audit": rows}, figures, {"forget_classes": forget})
    for name, res in results.items():
        log.info("%-14s %s", name, " ".join(f"{k}={v:.3g}" for k, v in res.items()))
    return results


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="audit")
def main(cfg: DictConfig) -> None:
    run_audit(cfg)


if __name__ == "__main__":
    main()
