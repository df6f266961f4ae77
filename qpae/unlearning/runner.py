"""Deletion requests end to end: check everything, measure before, unlearn, measure after, publish.

A run's checks all come before its first training step: the output folders are free, the input
is a compatible model file, and every request of a sequence resolves (names, indices, classes
already forgotten, something left to retain). Each request's ``model.pt``, ``metrics.json`` and
``receipt.json`` are published together (:mod:`qpae.publish`) or not at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import torch

from qpae.checkpoints import ModelFile, build_net, json_bytes, model_bytes, read_model
from qpae.data.base import AudioDataModule
from qpae.data.features import FeatureConfig
from qpae.metrics.unlearning import METRIC_ORDER
from qpae.publish import OutputExistsError, ensure_free, publish_files
from qpae.unlearning.methods.base import TrainingData, UnlearningMethod
from qpae.unlearning.module import UnlearnModule
from qpae.unlearning.receipt import erasure_receipt
from qpae.unlearning.request import ClassSelection, ForgetRequest, RequestError, plan_requests
from qpae.unlearning.schedule import ConvergenceMonitor, NotErasedError

log = logging.getLogger(__name__)

OUTPUT_FILES = ("model.pt", "metrics.json", "receipt.json")


def _features_of(recorded: object, path: Path) -> FeatureConfig:
    """The feature settings a model file records (settings it lacks take their defaults)."""
    try:
        settings = dict(recorded)
        if settings.get("resize") is not None:
            settings["resize"] = tuple(settings["resize"])
        return FeatureConfig(**settings)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path} records feature settings qpae does not know: {recorded} ({err})") from None


def check_compatible(meta: dict, datamodule: AudioDataModule, path: Path) -> None:
    """The model file must have been trained on this dataset's classes, split and features."""
    try:
        data = meta["data"]
        num_classes, fingerprint = data["num_classes"], data["split_fingerprint"]
    except (KeyError, TypeError):
        raise ValueError(f"{path} is not a qpae model file: it records no dataset and split") from None
    if data.get("dataset", datamodule.name) != datamodule.name:
        raise ValueError(
            f"{path} was trained on {data['dataset']}, not {datamodule.name}: choose the dataset it was "
            "trained on"
        )
    if num_classes != datamodule.num_classes:
        raise ValueError(
            f"{path} has {num_classes} classes but {datamodule.name} has "
            f"{datamodule.num_classes}: it was trained on other data or other settings"
        )
    names = data.get("class_names")
    if names is not None and list(names) != list(datamodule.class_names):
        raise ValueError(
            f"{path} was trained on other classes of {datamodule.name} (or in another order); "
            "its class indices would name other people here"
        )
    recorded = data.get("features")
    if recorded is not None and _features_of(recorded, path) != datamodule.features:
        raise ValueError(
            f"{path} was trained on other features ({_features_of(recorded, path).as_dict()}) than these "
            f"({datamodule.features.as_dict()}): it would read them as noise. Choose the model= (and "
            "dataset.features) it was trained with"
        )
    if fingerprint != datamodule.split_fingerprint:
        raise ValueError(
            f"{path} was trained on a different train/test split of {datamodule.name} (other split_seed, "
            f"split_by, fractions or files: the model's split_by is {data.get('split_by', 'recording')}, "
            f"this one's {datamodule.split.method}); unlearning must use the split the model was trained with"
        )


def check_outputs_free(output_dirs: Sequence[Path], input_path: Path) -> None:
    """Refuse, before any work, to write where another run's outputs or this run's input lie."""
    resolved_input = input_path.resolve()
    for out in output_dirs:
        ensure_free(out)
        if resolved_input.is_relative_to(out.resolve()):
            raise OutputExistsError(f"the input model {input_path} lies inside the output folder {out}")
    for root in {out.parent for out in output_dirs}:
        if resolved_input.is_relative_to(root.resolve()):
            raise OutputExistsError(f"the output folder {root} holds this run's input {input_path}")
        leftovers = [name for name in OUTPUT_FILES if (root / name).exists()]
        if leftovers:
            raise OutputExistsError(f"{root} already holds another run's outputs ({', '.join(leftovers)})")


def unlearn_request(
    input_path: Path,
    request: ForgetRequest,
    datamodule: AudioDataModule,
    method: UnlearningMethod,
    make_trainer: Callable[..., L.Trainer],
    output_dir: Path,
    how_to_create: str = "make pretrain DATASET=<dataset> MODEL=<model>",
    purging: bool = False,
) -> dict:
    """Forget ``request`` from the model at ``input_path``; publish ``model.pt``, ``metrics.json``
    and ``receipt.json`` together into ``output_dir`` (which must not exist yet). Returns
    metrics.json's content.

    With ``purging``, the receipt is published with a pending purge of the request's speakers,
    which the purge replaces with what it deleted: a run stopped in between leaves a receipt that
    says the features are not yet deleted, never one silent about it."""
    input_path, output_dir = Path(input_path), Path(output_dir)
    load_started = time.perf_counter()
    ensure_free(output_dir)  # the sequence's root was checked by run_requests
    if input_path.resolve().is_relative_to(output_dir.resolve()):
        raise OutputExistsError(f"the input model {input_path} lies inside the output folder {output_dir}")
    model = load_input(input_path, how_to_create)
    check_compatible(model.meta, datamodule, input_path)
    forgotten_before = tuple(sorted(model.meta.get("forgotten_classes", [])))
    if tuple(request.previously_forgotten) != forgotten_before:
        raise RequestError(
            f"the request was planned for a model that had forgotten {list(request.previously_forgotten)}, "
            f"but {input_path} has forgotten {list(forgotten_before)}"
        )
    check_training_samples(request, datamodule)
    retain_count = auto_retain_count(request, datamodule, method)

    net = build_net(model.meta)
    net.load_state_dict(model.state_dict)
    if method.from_scratch:
        method.adopt_recipe(model.meta.get("recipe"))
    module = UnlearnModule(net, method, request, TrainingData(datamodule, request))
    monitor = convergence_monitor(request, datamodule, method)
    trainer = make_trainer(**method.trainer_limits(), callbacks=[monitor] if monitor else None)
    datamodule.place_on(trainer.strategy.root_device)
    load_s = time.perf_counter() - load_started
    started = time.perf_counter()
    # the module's own test_dataloader(): built after DDP's process group exists, so that each
    # process evaluates its own share of the test set without Lightning's padding duplicates
    trainer.test(module, verbose=False)
    before = module.last_evaluation
    eval_s = time.perf_counter() - started
    module.start_evaluation("after", fa_before=before["FA"])
    if method.from_scratch:  # retrain: the same start as pretraining (fresh, or ImageNet weights)
        module.net.load_state_dict(build_net(model.meta, initial_weights=True).state_dict())
    loader = datamodule.unlearning_loader(
        request.all_forgotten, method.train_on, method.retain_fraction, retain_count=retain_count
    )
    started = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    fit_s = time.perf_counter() - started
    schedule = {"kind": method.schedule.kind, "steps": trainer.global_step, **method.training_summary()}
    if monitor is not None:
        schedule.update(monitor.summary(), retained_per_epoch=retain_count)
        final_fa, _ = monitor.measure(module.net, as_published=False)  # phase 4 is already applied
        if final_fa > 0:
            raise NotErasedError(
                f"{method.name} did not erase {request_names(request, datamodule)} within "
                f"max_steps={method.schedule.max_steps}: FA {final_fa:.1f}% on their training clips "
                f"({monitor.stop_reason}); no model was written. Raise unlearn.schedule.max_steps or "
                "choose another method."
            )
    started = time.perf_counter()
    trainer.test(module, verbose=False)
    after = module.last_evaluation
    eval_s += time.perf_counter() - started

    names = datamodule.class_names
    report = {
        "request": {
            "forget_classes": list(request.forget_classes),
            "forget_class_names": [names[c] for c in request.forget_classes],
            "previously_forgotten": list(request.previously_forgotten),
            "previously_forgotten_names": [names[c] for c in request.previously_forgotten],
        },
        "method": method.config(),
        "before": before,
        "after": after,
        "schedule": schedule,
        "timings_s": {**module.timings, "fit_total_s": fit_s, "evaluation_s": eval_s, "load_s": load_s},
        "original_test_metrics": model.meta.get("test_metrics", {}),
        "input_sha256": model.sha256,
    }
    if trainer.is_global_zero:
        out_meta = {
            **model.meta,
            "forgotten_classes": list(request.all_forgotten),
            "unlearned_by": method.config(),
        }
        data = model_bytes(module.net, out_meta)
        receipt = erasure_receipt(
            request,
            names,
            model.meta["data"],
            method.config(),
            model.sha256,
            hashlib.sha256(data).hexdigest(),
            before,
            after,
        )
        if purging:
            receipt["purge"] = {
                "status": "pending",
                "speakers": [names[c] for c in request.forget_classes],
                "how_to_finish": f"qpae-store dataset={datamodule.name} paths.data=<the run's data folder> "
                f"paths.cache=<each of: {', '.join(purge_caches(model.meta, datamodule))}> store.action=purge "
                f"'store.speakers={json.dumps([names[c] for c in request.forget_classes], ensure_ascii=False)}' "
                "(the receipt stays pending: the stores' purge records, qpae-store status, then show it done)",
            }
        publish_files(
            output_dir,
            {"model.pt": data, "metrics.json": json_bytes(report), "receipt.json": json_bytes(receipt)},
        )
        log.info("\n%s", format_table(before, after, request, names))
    # the next request of a sequence reads this one's model.pt on every rank: wait until it exists
    trainer.strategy.barrier("qpae-request-published")
    return report


def request_names(request: ForgetRequest, datamodule: AudioDataModule) -> str:
    return ", ".join(datamodule.class_names[c] for c in request.forget_classes)


def auto_retain_count(
    request: ForgetRequest, datamodule: AudioDataModule, method: UnlearningMethod
) -> int | None:
    """Retained clips per epoch under the automatic schedule (None for other schedules):
    ``retain_per_forget`` per forget clip of the epoch — every forgotten class's training clips,
    earlier requests' included, so that the share of uniform targets does not grow along a
    sequence — and at most every retained clip. Asking for more retained clips than there are
    for this request's own clips alone is an error, before any training."""
    if not method.auto_schedule or method.train_on != "forget+retain":
        return None
    labels = datamodule.dataset("train").targets
    forget_clips = int(torch.isin(labels, torch.tensor(request.forget_classes)).sum())
    epoch_forget_clips = int(torch.isin(labels, torch.tensor(request.all_forgotten)).sum())
    retained = int(len(labels) - epoch_forget_clips)
    ratio = method.schedule.retain_per_forget
    if round(ratio * forget_clips) > retained:
        raise ValueError(
            f"unlearn.schedule.retain_per_forget={ratio} asks for {round(ratio * forget_clips)} retained "
            f"clips per epoch ({forget_clips} forget clips of {request_names(request, datamodule)}), but only "
            f"{retained} training clips are retained; lower it to at most {retained / forget_clips:.2f}"
        )
    return min(retained, int(round(ratio * epoch_forget_clips)))


def convergence_monitor(
    request: ForgetRequest, datamodule: AudioDataModule, method: UnlearningMethod
) -> ConvergenceMonitor | None:
    """The automatic schedule's stopping rule for this request (None for other schedules)."""
    if not method.auto_schedule:
        return None
    forget = datamodule.forget_set(request.all_forgotten).tensors
    heldout = datamodule.retain_set(request.all_forgotten, split="val")  # sampled, never all read
    return ConvergenceMonitor(
        method.schedule,
        forget,
        heldout,
        seed=datamodule.order_seed,
        published_head=lambda weight, bias: method.published_head(weight, bias, request),
    )


class ModelNotFoundError(FileNotFoundError):
    """The model a run starts from is not there; the message says how to create it."""


def load_input(input_path: Path, how_to_create: str) -> ModelFile:
    """The input model file, read once; a missing file says how to create it."""
    if not input_path.is_file():
        raise ModelNotFoundError(
            f"no pretrained model at {input_path}; create it with `{how_to_create}` "
            "(or point input=... at a model file)"
        )
    return read_model(input_path)


def check_training_samples(request: ForgetRequest, datamodule: AudioDataModule) -> None:
    train_counts = datamodule.dataset("train").targets.bincount(minlength=datamodule.num_classes)
    empty = [datamodule.class_names[c] for c in request.forget_classes if train_counts[c] == 0]
    if empty:
        raise RequestError(f"forget classes {empty} have no training samples to unlearn from")


def run_requests(
    input_path: Path,
    selections: Sequence[ClassSelection],
    datamodule: AudioDataModule,
    make_method: Callable[[], UnlearningMethod],
    make_trainer: Callable[..., L.Trainer],
    output_root: Path,
    how_to_create: str = "make pretrain DATASET=<dataset> MODEL=<model>",
    purging: bool = False,
) -> list[dict]:
    """Serve a sequence of requests in order, each starting from the previous one's model.

    Everything that can be checked is checked for the whole sequence before the first request
    runs: the output folders, the input model, and every request's classes. Request k publishes
    into ``output_root/request-kk``.
    """
    input_path, output_root = Path(input_path), Path(output_root)
    outputs = [output_root / f"request-{k:02d}" for k in range(1, len(selections) + 1)]
    check_outputs_free(outputs, input_path)
    model = load_input(input_path, how_to_create)
    check_compatible(model.meta, datamodule, input_path)
    requests = plan_requests(selections, datamodule.class_names, model.meta.get("forgotten_classes", []))
    method = make_method()  # a bad method setting fails now, not after the first request
    for request in requests:
        check_training_samples(request, datamodule)
        auto_retain_count(request, datamodule, method)

    reports, current = [], input_path
    for request, out in zip(requests, outputs, strict=True):
        reports.append(
            unlearn_request(
                current, request, datamodule, make_method(), make_trainer, out, how_to_create, purging
            )
        )
        current = out / "model.pt"
    copies = residual_copies(
        model.meta, datamodule, [input_path, *(o / "model.pt" for o in outputs[:-1])], purging
    )
    log.warning(
        "unlearning changed the model, not the copies: until you remove them, these still hold the "
        "forgotten classes' data or recognise them:\n  %s",
        "\n  ".join(copies),
    )
    return reports


def purge_caches(meta: dict, datamodule: AudioDataModule) -> list[str]:
    """The feature caches a purge of this run reaches: this run's and the one the original was
    trained from."""
    artifacts = meta.get("training_artifacts") or {}
    return list(
        dict.fromkeys(
            str(Path(c).resolve()) for c in (artifacts.get("feature_cache"), datamodule.cache_dir) if c
        )
    )


def residual_copies(
    meta: dict, datamodule: AudioDataModule, earlier_models: Sequence[Path], purging: bool = False
) -> list[str]:
    """Places that still hold the forgotten people's data, or a model that recognises them,
    after an unlearning run: qpae does not delete them (they are the operator's to purge) —
    except the feature stores, when the run purges them."""
    artifacts = meta.get("training_artifacts") or {}
    caches = purge_caches(meta, datamodule)
    out = (
        []
        if purging
        else [
            f"{cache}: the feature store holds their log-mel features (purge=false; qpae-store … "
            "store.action=purge deletes them)"
            for cache in caches
        ]
    )
    out += [f"{m}: this model still recognises what later requests forgot" for m in earlier_models]
    if artifacts.get("lightning_checkpoints"):
        out.append(
            f"{artifacts['lightning_checkpoints']}: pretraining's Lightning checkpoints "
            "(weights and optimizer state built from their clips)"
        )
    out.append(f"{datamodule.data_dir}: the source recordings")
    return out


def format_table(before: dict, after: dict, request: ForgetRequest, class_names: list[str]) -> str:
    """The before/after console table, in the paper's column order."""
    names = ", ".join(class_names[c] for c in request.all_forgotten)
    rows = [f"forgetting {names}", f"{'':8}" + "".join(f"{k:>10}" for k in METRIC_ORDER)]
    for tag, values in (("before", before), ("after", after)):
        cells = "".join(f"{'—':>10}" if k not in values else f"{values[k]:10.2f}" for k in METRIC_ORDER)
        rows.append(f"{tag:8}{cells}")
    return "\n".join(rows)
