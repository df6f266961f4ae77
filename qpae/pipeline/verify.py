"""Verification-mode evaluation run: enrol, score trials, write verification.json and a DET curve."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig

from qpae.audit.inputs import read_checked
from qpae.audit.run import net_of
from qpae.checkpoints import save_json
from qpae.pipeline.enrol import names_list
from qpae.publish import OutputExistsError
from qpae.verification.evaluate import evaluate

log = logging.getLogger(__name__)


def run_verification(cfg: DictConfig) -> dict:
    """Score every configured model (``models``: name → model.pt) on the same trials; every file
    is checked against the dataset (classes, split) before any scoring."""
    out = Path(cfg.output_dir)
    if (out / "verification.json").exists():
        raise OutputExistsError(f"{out} already holds verification.json; choose a new output folder")
    if not cfg.models:
        raise ValueError(
            "name the models to score: +models.original=…/pretrained.pt (+models.NAME=… for more)"
        )
    L.seed_everything(cfg.seed, verbose=False)
    datamodule = hydra.utils.instantiate(cfg.dataset)
    datamodule.prepare_data()
    datamodule.setup()
    files = read_checked(dict(cfg.models), datamodule)
    out.mkdir(parents=True, exist_ok=True)
    enrolled = names_list(cfg.enrolled, "enrolled")
    report = evaluate(
        {name: net_of(f) for name, f in files.items()},
        datamodule,
        enrolled=enrolled,
        enrol_clips=cfg.enrol_clips,
        nontarget_per_clip=int(cfg.nontarget_per_clip),
        cohort=names_list(cfg.cohort, "cohort") or [],
        seed=int(cfg.seed),
        det_path=out / "det.png",
        reenrol=names_list(cfg.reenrol, "reenrol") or [],
    )
    report["models_sha256"] = {name: f.sha256 for name, f in files.items()}
    save_json(out / "verification.json", report)
    for name, summary in report["models"].items():
        log.info(
            "%-14s EER %.2f%%  minDCF@0.01 %.3f  minDCF@0.05 %.3f  (%d target / %d non-target trials)",
            name,
            summary["EER"],
            summary["minDCF@0.01"],
            summary["minDCF@0.05"],
            summary["target_trials"],
            summary["nontarget_trials"],
        )
    for person, per_model in (report.get("reenrolment") or {}).items():
        for name, fig in per_model.items():
            log.info(
                "re-enrolling %s on %-10s EER %.2f%%  score gap %.3f (target %.3f, non-target %.3f)",
                person,
                name,
                fig["EER"],
                fig["score_gap"],
                fig["target_mean"],
                fig["nontarget_mean"],
            )
            c = fig["compactness"]
            log.info(
                "  %s's clips on %-10s cosine within %.3f / between %.3f (other speakers: %.3f / %.3f)",
                person,
                name,
                c["within"],
                c["between"],
                c["others_within"],
                c["others_between"],
            )
    return report
