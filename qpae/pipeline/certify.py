"""The certification run: ensembles (built by Hydra multirun jobs), per-clip ε, the certificate.

``certify`` checks everything first (N, the original against the data, the forget set, the
certified model and its receipt, the ensemble caches), then has the missing ensemble members
built by ``qpae-ensemble --multirun`` through the configured Hydra launcher (joblib on this
machine, submitit on a cluster), then measures every member and publishes ``certificate.json``
and ``epsilon_hist.png`` together. ``build_member`` is what each of those jobs runs.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from qpae import __version__
from qpae.audit import certify as cert
from qpae.audit import ensemble as ens
from qpae.audit.epsilon import lower_ceiling
from qpae.checkpoints import json_bytes, sha256_file, write_atomic
from qpae.pipeline.device import check_device
from qpae.pipeline.unlearn import unlearning_trainer_factory
from qpae.publish import ensure_free, publish_files
from qpae.tracking import log_results
from qpae.unlearning.receipt import verify_receipt
from qpae.unlearning.request import (
    ClassSelection,
    ForgetRequest,
    RequestError,
    plan_requests,
    selections_from_config,
)
from qpae.unlearning.runner import auto_retain_count, check_compatible, check_training_samples, load_input

log = logging.getLogger(__name__)

OUTPUT_FILES = ("certificate.json", "epsilon_hist.png")
# the keys that only steer qpae-certify itself, never what a member is
# (qpae-certify passes the input model and the resolved forget set itself)
CERTIFY_ONLY = (
    "certify.kind",
    "certify.member",
    "certify.launcher",
    "certify.jobs",
    "certify.model",
    "wandb",
    "input",
    "forget",
    "forget_index",
)


def method_config(cfg: DictConfig, kind: str) -> DictConfig:
    """The method config of an ensemble kind: the method under test (``unlearn``), retrain, or
    the power test's finetune."""
    return {"unlearned": cfg.unlearn, "retrain": cfg.certify.retrain, "power": cfg.certify.power}[kind]


def run_context(cfg: DictConfig) -> dict:
    """The settings besides the method that shape every member's training (part of the
    ensembles' cache keys): the trainer's, the batch size, qpae's version."""
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    for key in ("default_root_dir", "enable_progress_bar", "enable_model_summary", "max_epochs"):
        trainer.pop(key, None)
    return {"trainer": trainer, "batch_size": cfg.dataset.get("batch_size"), "qpae": __version__}


def ensemble_of(cfg: DictConfig, kind: str, original, request: ForgetRequest, class_names) -> ens.Ensemble:
    """The cached ensemble of ``kind`` for this config, original and request: the one key that
    qpae-certify and every qpae-ensemble job compute alike."""
    settings = OmegaConf.to_container(method_config(cfg, kind), resolve=True)
    identity = ens.identity(
        kind, original.meta, original.sha256, request, class_names, settings, run_context(cfg)
    )
    return ens.Ensemble(kind, identity, Path(cfg.certify.cache))


def hydra_value(text: str) -> str:
    """``text`` as one quoted Hydra override value (a path with commas, brackets, quotes or
    ``${`` stays one literal path)."""
    escaped = text.replace("'", "\\'").replace("${", "\\${")  # Hydra keeps other backslashes
    return f"'{escaped}'"


def _data(cfg: DictConfig):
    datamodule = hydra.utils.instantiate(cfg.dataset)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def _request(
    cfg: DictConfig, original_meta: dict, class_names, certified_receipt: dict | None
) -> ForgetRequest:
    """The forget request: from ``forget`` / ``forget_index``, else from the certified model's
    receipt (by index, checked against its names)."""
    if cfg.get("forget") is None and cfg.get("forget_index") is None:
        if certified_receipt is None:
            raise RequestError(
                "say what was forgotten (forget=[NAME] or forget_index=[I]) or which unlearning run to "
                "certify (certify.model=…/model.pt)"
            )
        selections = [ClassSelection(indices=tuple(certified_receipt["request"]["forget_classes"]))]
    else:
        selections = selections_from_config(cfg.get("forget"), cfg.get("forget_index"))
        if len(selections) != 1:
            raise RequestError("certify one request at a time (forget= or forget_index=)")
    [request] = plan_requests(selections, class_names, original_meta.get("forgotten_classes", []))
    return request


def _certified(cfg: DictConfig, original_sha256: str) -> tuple[Path, dict] | None:
    """The unlearning run's model being certified and its receipt, checked against each other and
    against the original it must have started from."""
    if not cfg.certify.model:
        return None
    model = Path(cfg.certify.model)
    receipt_path = model.parent / "receipt.json"
    verdict = verify_receipt(receipt_path, model)
    if not verdict.ok:
        raise ValueError(f"certify.model: {verdict.reason}")
    receipt = json.loads(receipt_path.read_text(encoding="utf-8"))
    if receipt["weights"]["input_sha256"] != original_sha256:
        raise ValueError(
            f"{model} was not unlearned from {cfg.input} (its receipt names input sha256 "
            f"{receipt['weights']['input_sha256'][:16]}…): certify it against the model it started from (input=…)"
        )
    # a step of a sequence is certified from the model it started from (input=, checked above):
    # its request carries the classes forgotten before, and the ensembles start from the same model
    return model, receipt


def _check_method(receipt: dict, cfg: DictConfig) -> None:
    """The certified run's method settings must be the unlearned ensemble's (else the ensemble
    would certify another method)."""
    fresh = hydra.utils.instantiate(cfg.unlearn).config()
    recorded = receipt["method"]
    differ = sorted(
        k
        for k in fresh
        if json.dumps(fresh[k], default=str, sort_keys=True)
        != json.dumps(recorded.get(k), default=str, sort_keys=True)
    )
    if differ:
        shown = ", ".join(f"{k}: run {recorded.get(k)!r} vs here {fresh[k]!r}" for k in differ[:4])
        raise ValueError(
            f"the certified run used other method settings ({shown}); pass the same method=, schedule= and "
            "unlearn.* settings"
        )


def plan(cfg: DictConfig) -> dict:
    """Every check of a certification, before any training; the ensembles and what is missing."""
    n = cfg.certify.n
    ens.check_members(n)
    if lower_ceiling(n, n) < 1.0:
        log.warning(
            "certify.n=%d: the most a Clopper–Pearson ε can show with %d models is %.2f, so the power test will "
            "barely pass or fail; N >= 16 resolves ε up to %.2f",
            n,
            n,
            lower_ceiling(n, n),
            lower_ceiling(16, 16),
        )
    out = Path(cfg.output_dir) / "certificate"  # published whole: both files or neither
    ensure_free(out)
    original_path = Path(cfg.input)
    original = load_input(original_path, "make pretrain (or point input=… at the original model)")
    certified = _certified(cfg, original.sha256)
    if certified is not None:
        _check_method(certified[1], cfg)
    delta = cfg.certify.delta
    if isinstance(delta, bool) or not isinstance(delta, int | float) or not 0 <= delta < 1 - 2 / n:
        raise ValueError(f"certify.delta must be a number in [0, {1 - 2 / n:.3g}) for N = {n}, got {delta!r}")
    jobs = cfg.certify.jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"certify.jobs must be a whole number >= 1, got {jobs!r}")
    methods = {
        kind: hydra.utils.instantiate(method_config(cfg, kind)) for kind in ens.KINDS
    }  # bad settings fail now
    datamodule = _data(cfg)
    check_compatible(original.meta, datamodule, original_path)
    names = datamodule.class_names
    request = _request(cfg, original.meta, names, certified[1] if certified else None)
    if certified is not None and sorted(certified[1]["request"]["forget_classes"]) != sorted(
        request.forget_classes
    ):
        raise RequestError(
            f"{certified[0]} forgot {certified[1]['request']['forget_class_names']}, not "
            f"{[names[c] for c in request.forget_classes]}"
        )
    # ε is measured on this request's clips: classes forgotten before it (possibly purged since)
    # had their own certificates
    datamodule.require_data(request.forget_classes, "certification")
    clips = ens.certification_clips(datamodule, request, cfg.certify.retained_clips)
    check_training_samples(request, datamodule)
    for method in methods.values():
        auto_retain_count(request, datamodule, method)  # a subsample larger than the retained set
    ensembles = {}
    for kind in ens.KINDS:
        ensembles[kind] = ensemble_of(cfg, kind, original, request, names)
        ensembles[kind].claim()  # another build's settings in this folder: refused now
    return {
        "n": n,
        "out": out,
        "original": original_path,
        "original_sha256": original.sha256,
        "certified": certified,
        "datamodule": datamodule,
        "request": request,
        "clips": clips,
        "ensembles": ensembles,
    }


def member_overrides(task_overrides: list[str]) -> list[str]:
    """The certify run's overrides that decide what a member is (data, model, method, paths)."""
    out = []
    for override in task_overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if not any(key == k or key.startswith(k + ".") for k in CERTIFY_ONLY):
            out.append(override)
    return out


def launch_members(cfg: DictConfig, kind: str, members: list[int], request: ForgetRequest) -> None:
    """Build ``members`` of one ensemble as a Hydra multirun of ``qpae-ensemble`` through the
    configured launcher (a subprocess: Hydra runs one app per process)."""
    launcher = str(cfg.certify.launcher)
    command = [
        sys.executable,
        "-m",
        "qpae.cli.ensemble",
        "--multirun",
        *member_overrides(list(HydraConfig.get().overrides.task)),
        # the launcher's own settings given to qpae-certify (partition, timeout, …)
        *(o for o in HydraConfig.get().overrides.hydra if o.lstrip("+~").startswith("hydra.launcher.")),
        "input=" + hydra_value(str(Path(cfg.input).resolve())),
        "forget_index=[" + ",".join(map(str, request.forget_classes)) + "]",
        f"certify.kind={kind}",
        "certify.member=" + ",".join(map(str, members)),
        f"hydra/launcher={launcher}",
    ]
    if launcher == "joblib":
        command.append(f"hydra.launcher.n_jobs={int(cfg.certify.jobs)}")
    log.info("building %s members %s: %s", kind, members, " ".join(command[2:]))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(command, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"a {kind} ensemble member failed (exit status {result.returncode}; its log is above): no certificate "
            "was written. Finished members are kept and reused by the next run."
        )


def build_member(cfg: DictConfig) -> Path:
    """One member of one ensemble (``certify.kind``, ``certify.member``): what each
    ``qpae-ensemble`` job runs. Checks as ``plan`` does; a finished member is not rebuilt."""
    check_device(cfg.trainer)  # trainer=gpu without a GPU: refused before any data is read
    kind, member = cfg.certify.kind, cfg.certify.member
    if kind is None or member is None:
        raise ValueError(
            "qpae-ensemble builds one member: set certify.kind=retrain|unlearned|power and certify.member=I"
        )
    ens.check_members(cfg.certify.n, [kind])
    original_path = Path(cfg.input)
    original = load_input(original_path, "make pretrain (or point input=… at the original model)")
    datamodule = _data(cfg)
    check_compatible(original.meta, datamodule, original_path)
    certified = _certified(cfg, original.sha256)
    request = _request(cfg, original.meta, datamodule.class_names, certified[1] if certified else None)
    ensemble = ensemble_of(cfg, kind, original, request, datamodule.class_names)
    log.info("%s %d/%d → %s", kind, int(member) + 1, int(cfg.certify.n), ensemble.member_path(int(member)))
    method = hydra.utils.instantiate(method_config(cfg, kind))
    return ens.build_member(
        ensemble,
        int(member),
        original_path,
        request,
        datamodule,
        method,
        unlearning_trainer_factory(cfg.trainer, []),
    )


Builder = Callable[[DictConfig, str, list[int], ForgetRequest], None]


def certify(cfg: DictConfig, build_missing: Builder | None = None) -> dict:
    """Certify: plan, build what is missing, measure, publish; link the certified run's receipt.

    ``build_missing(cfg, kind, members, request)`` builds members (default: a Hydra multirun of
    ``qpae-ensemble`` through ``certify.launcher``; the bench builds them in its own process)."""
    build_missing = build_missing or launch_members
    check_device(cfg.trainer)  # trainer=gpu without a GPU: refused before N models are planned
    started = time.perf_counter()
    p = plan(cfg)
    n, ensembles = p["n"], p["ensembles"]
    build_s = {}
    # the method under test first: a method that cannot erase fails before N retrains
    for kind in ("unlearned", "power", "retrain"):
        ensemble = ensembles[kind]
        missing = ensemble.missing(n)
        log.info("%s ensemble %s: %d/%d members cached", kind, ensemble.path, n - len(missing), n)
        t0 = time.perf_counter()
        if missing:
            build_missing(cfg, kind, missing, p["request"])
        build_s[kind] = time.perf_counter() - t0
    t0 = time.perf_counter()
    measures = {kind: ens.ensemble_measures(e, n, p["clips"]) for kind, e in ensembles.items()}
    body, eps = cert.certificate(
        measures["unlearned"], measures["retrain"], measures["power"], float(cfg.certify.delta)
    )
    names = p["datamodule"].class_names
    request = p["request"]
    certified = p["certified"]
    body = {
        "certificate_version": 1,
        "forget_classes": list(request.forget_classes),
        "forget_class_names": [names[c] for c in request.forget_classes],
        "dataset": p["datamodule"].describe(),
        "original": {"path": str(p["original"]), "sha256": p["original_sha256"]},
        "certified_model": (
            {"path": str(certified[0]), "sha256": certified[1]["weights"]["output_sha256"]}
            if certified
            else None
        ),
        "method": OmegaConf.to_container(cfg.unlearn, resolve=True),
        **body,
        "ensembles": {
            kind: {
                "path": str(e.path),
                "key": e.key,
                "members_sha256": measures[kind]["sha256"],
                "member_fit_s": measures[kind]["fit_s"],
                "build_wall_s": build_s[kind],
            }
            for kind, e in ensembles.items()
        },
        "measure_s": time.perf_counter() - t0,
        "wall_s": time.perf_counter() - started,
    }
    with tempfile.TemporaryDirectory() as tmp:
        figure = cert.epsilon_figure(eps, Path(tmp) / "epsilon_hist.png")
        files = {"certificate.json": json_bytes(body), "epsilon_hist.png": figure.read_bytes()}
    publish_files(p["out"], files)
    if certified is not None:
        link_receipt(certified[0].parent / "receipt.json", p["out"] / "certificate.json", body)
    if cfg.get("wandb"):
        summary = {f"epsilon_{k}": v for k, v in body["epsilon"]["forget"].items() if isinstance(v, float)}
        log_results(
            "certify",
            p["out"],
            {},
            {"epsilon_hist": p["out"] / "epsilon_hist.png"},
            {**summary, "valid": body["valid"]},
        )
    return body


def summary(body: dict) -> dict:
    """The lines of a certificate that a receipt carries."""
    forget = body["epsilon"]["forget"]
    return {
        "valid": body["valid"],
        "n": body["n"],
        "epsilon_median": forget["median"],
        "epsilon_p95": forget["p95"],
        "epsilon_lower_median": forget["lower_median"],
        "epsilon_lower_p95": forget["lower_p95"],
        "score": body["score"],
    }


def link_receipt(receipt_path: Path, certificate_path: Path, body: dict) -> None:
    """Add the certificate's path, sha256 and summary to the certified run's receipt (rewritten
    whole); every earlier certificate stays listed."""
    receipt = json.loads(receipt_path.read_text(encoding="utf-8"))
    entry = {
        "path": str(certificate_path.resolve()),
        "sha256": sha256_file(certificate_path),
        **summary(body),
    }
    receipt["certificates"] = [*receipt.get("certificates", []), entry]
    write_atomic(receipt_path, json_bytes(receipt))
    log.info("linked %s from %s", certificate_path, receipt_path)
