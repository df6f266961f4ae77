"""Unlearning runs: forget classes from a pretrained model; one request or a sequence."""

from __future__ import annotations

import json
import logging
import shlex
import time
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from qpae.checkpoints import json_bytes, read_model, sha256_file, write_atomic
from qpae.data.store import purge_everywhere
from qpae.pipeline import latest
from qpae.pipeline.config import finish_loggers, instantiate_dict, is_rank_zero, log_config
from qpae.pipeline.device import build_trainer, check_device
from qpae.pipeline.enrol import erase_from_stores, plan_verification_erasure, verification_stores
from qpae.publish import remove_stale_leftovers
from qpae.unlearning.request import selections_from_config
from qpae.unlearning.runner import ModelNotFoundError, check_outputs_free, run_requests

log = logging.getLogger(__name__)


def unlearning_trainer_factory(trainer_cfg: DictConfig, loggers: list):
    """Trainers for unlearning runs: no validation and no checkpoints, because a Lightning
    checkpoint would carry optimizer state built from the forget data's gradients."""

    def make_trainer(**overrides):
        return build_trainer(
            trainer_cfg,
            logger=loggers or False,
            enable_checkpointing=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            **overrides,
        )

    return make_trainer


def pretrain_hint() -> str:
    """The `make pretrain` command that creates the model this run expects, with every data, model
    and path argument the user gave (so that running it literally works)."""
    hydra_cfg = HydraConfig.get()
    choices = hydra_cfg.runtime.choices
    parts = [f"make pretrain DATASET={choices.dataset} MODEL={choices.model}"]
    args = []
    for override in list(hydra_cfg.overrides.task):
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if key in ("dataset", "model"):
            continue
        if key == "paths.data":
            parts.append(f"DATA_DIR={shlex.quote(value)}")
        elif key in ("paths.root", "paths.checkpoints") or override in latest.data_overrides([override]):
            args.append(f"{override.partition('=')[0]}={value}")
    if args:
        parts.append("ARGS=" + shlex.quote(" ".join(shlex.quote(a) for a in args)))
    return " ".join(parts)


def purge_forgotten(datamodule, source: Path, out_root: Path, reports: list[dict]) -> dict:
    """Erasure reaches the data: delete the forgotten speakers' features from every feature store
    of the dataset (this run's cache and the one the original was trained from), then add to each
    request's receipt what was deleted for its speakers (shard names and sha256, never content)."""
    artifacts = read_model(source).meta.get("training_artifacts") or {}
    caches = [datamodule.cache_dir, *([artifacts["feature_cache"]] if artifacts.get("feature_cache") else [])]
    purged = set(datamodule.store().purged())
    speakers = [
        name
        for report in reports
        for name in report["request"]["forget_class_names"]
        if name not in purged  # an earlier run's purge
    ]
    record = purge_everywhere(
        caches, datamodule.name, datamodule.store_folder, speakers, reason=f"qpae-unlearn {out_root}"
    )
    datamodule.store().release()  # this process's maps of the deleted shards
    datamodule.drop_device_copies()  # and any copy of their features on an accelerator
    for k, report in enumerate(reports, start=1):
        mine = set(report["request"]["forget_class_names"])
        entry = {
            "status": "done",
            **{key: record[key] for key in ("reason", "purged_at", "legacy_caches_removed")},
            "speakers": sorted(mine & set(speakers)),
            "stores": [
                {"store": s["store"], "purged": [p for p in s["purged"] if p["speaker"] in mine]}
                for s in record["stores"]
            ],
        }
        path = out_root / f"request-{k:02d}" / "receipt.json"
        receipt = json.loads(path.read_text(encoding="utf-8"))
        write_atomic(path, json_bytes({**receipt, "purge": entry}))
    log.info(
        "purged %s from %d feature store(s); their shards are listed in the receipts",
        speakers,
        len(record["stores"]),
    )
    return record


def wall_time_line(
    started: float | None,
    entered: float,
    data_s: float,
    requests_s: float,
    purge_s: float,
    reports: list[dict],
    stores_s: float | None = None,
) -> str:
    """Where the wall time went, from ``started`` (the command's start; else this call's) to now."""
    t = [r["timings_s"] for r in reports]
    load, evaluation, training = (
        sum(x.get(k, 0.0) for x in t) for k in ("load_s", "evaluation_s", "fit_total_s")
    )
    started = entered if started is None else started
    parts = {
        "start-up (imports, config, checks)": entered - started,
        "data setup": data_s,
        "model load": load,
        "evaluation": evaluation,
        "training": training,
        "writing and the rest of the requests": requests_s - load - evaluation - training,
        "purge": purge_s,
        **(
            {"enrolment and cohort edits (re-enrolling the others)": stores_s} if stores_s is not None else {}
        ),
    }
    wall = time.perf_counter() - started
    return f"wall time {wall:.1f} s ({wall / max(training, 1e-9):.1f}× training): " + ", ".join(
        f"{name} {seconds:.1f} s" for name, seconds in parts.items()
    )


def unlearn(cfg: DictConfig, started: float | None = None) -> list[dict]:
    """Run the requests of ``cfg`` (``forget``, ``forget_index``, ``requests`` or
    ``requests_index``) in order; each starts from the last one's model. ``started``: when the
    command began (``qpae-unlearn`` passes its process start), for the wall-time breakdown."""
    entered = time.perf_counter()
    # bad requests and occupied output folders fail before any data is decoded
    selections = selections_from_config(
        cfg.get("forget"), cfg.get("forget_index"), cfg.get("requests"), cfg.get("requests_index")
    )
    out_root, source = Path(cfg.output_dir), Path(cfg.input)
    # staging folders of killed runs may hold a model without its receipt: remove them first
    for leftover in remove_stale_leftovers(Path(cfg.paths.runs) / cfg.task_name, recursive=True):
        log.warning("removed %s, left by a killed run", leftover)
    check_outputs_free([out_root / f"request-{k:02d}" for k in range(1, len(selections) + 1)], source)
    if not source.is_file():  # before any data is synthesised or decoded
        raise ModelNotFoundError(
            f"no pretrained model at {source}; create it with `{pretrain_hint()}` (or point input=... at a model file)"
        )
    # verification mode: the stores exist, and one request (its receipt records their edits)
    stores = verification_stores(cfg)  # (enrolment, cohort) paths, checked to exist; (None, None): not asked
    if stores[0] is not None and len(selections) != 1:
        raise ValueError(
            "verification.enrolment takes one request (forget=… or forget_index=…), not a sequence"
        )
    hydra.utils.instantiate(cfg.unlearn)  # a bad method setting fails now too
    check_device(cfg.trainer)  # and trainer=gpu on a machine without one
    purge = cfg.get("purge")
    if purge not in (None, True, False):
        raise ValueError(f"purge must be true, false or null (true for speaker ID), got {purge!r}")

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    data_started = time.perf_counter()
    datamodule = hydra.utils.instantiate(cfg.dataset)
    datamodule.prepare_data()
    datamodule.setup("fit")
    data_s = time.perf_counter() - data_started
    if purge is True and not datamodule.label_is_speaker:
        raise ValueError(
            f"purge=true deletes the forgotten speakers' features, but the classes of {datamodule.name} are not "
            "speakers (each holds several people): forget speakers of a speaker-ID dataset, or set purge=false"
        )
    purge = datamodule.label_is_speaker if purge is None else purge
    store_edits = None
    if stores[0] is not None:  # every forgotten person enrolled: checked before training
        forgotten = [datamodule.class_names[c] for c in selections[0].resolve(datamodule.class_names)]
        store_edits = plan_verification_erasure(
            *stores, cfg.data_seed, datamodule, forgotten, sha256_file(source)
        )
    # loggers start with the first trainer, after every check: a refused run leaves no W&B folder
    loggers: list = []

    def make_trainer(**overrides):
        if not loggers:
            loggers.extend(instantiate_dict(cfg.get("logger")))
            log_config(loggers, cfg)
        return unlearning_trainer_factory(cfg.trainer, loggers)(**overrides)

    requests_started = time.perf_counter()
    try:
        reports = run_requests(
            source,
            selections,
            datamodule,
            lambda: hydra.utils.instantiate(cfg.unlearn),
            make_trainer,
            out_root,
            pretrain_hint(),
            purging=purge,
        )
    finally:  # features copied to an accelerator do not outlive the run (nor a purge after it)
        datamodule.drop_device_copies()
    requests_s = time.perf_counter() - requests_started
    finish_loggers(loggers)
    last = out_root / f"request-{len(reports):02d}"
    published = (last / "model.pt").is_file()
    stores_started, stores_s = time.perf_counter(), None
    if store_edits is not None and published and is_rank_zero():  # before a purge: re-enrolment reads clips
        entry = erase_from_stores(store_edits, datamodule, last / "model.pt")
        receipt = json.loads((last / "receipt.json").read_text(encoding="utf-8"))
        write_atomic(last / "receipt.json", json_bytes({**receipt, "verification": entry}))
        stores_s = time.perf_counter() - stores_started
    purge_started = time.perf_counter()
    if purge and published and is_rank_zero():
        purge_forgotten(datamodule, source, out_root, reports)
    if is_rank_zero():
        purge_s = time.perf_counter() - purge_started
        log.info("%s", wall_time_line(started, entered, data_s, requests_s, purge_s, reports, stores_s))
    if cfg.get("record_latest", False) and published and is_rank_zero():  # what `make audit` audits next
        entry = {
            "model": str((last / "model.pt").resolve()),
            "input": str(source.resolve()),
            "input_sha256": reports[0]["input_sha256"],
            "method": HydraConfig.get().runtime.choices.method,
        }
        latest.record(cfg, "unlearn", entry)
    return reports
