"""One deletion request end to end: check, measure before, unlearn, measure after, write."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L

from qpae.checkpoints import build_net, load_model, save_json, save_model, sha256_file
from qpae.data.base import AudioDataModule
from qpae.unlearning.methods.base import TrainingData, UnlearningMethod
from qpae.unlearning.module import UnlearnModule
from qpae.unlearning.receipt import erasure_receipt
from qpae.unlearning.request import ForgetRequest

log = logging.getLogger(__name__)

METRIC_ORDER = ("FA", "FAR", "RA", "FRR", "PER", "IL", "ERB")


def check_compatible(meta: dict, datamodule: AudioDataModule, path: Path) -> None:
    """The model file must have been trained on this dataset's classes and split."""
    data = meta["data"]
    if data["num_classes"] != datamodule.num_classes:
        raise ValueError(
            f"{path} has {data['num_classes']} classes but {datamodule.name} has "
            f"{datamodule.num_classes}: it was trained on other data or other settings"
        )
    if data["split_fingerprint"] != datamodule.split_fingerprint:
        raise ValueError(
            f"{path} was trained on a different train/test split of {datamodule.name} (other seed, "
            "fractions or files); unlearning must use the split the model was trained with"
        )


def unlearn_request(
    input_path: Path,
    forget: Sequence[int | str],
    datamodule: AudioDataModule,
    method: UnlearningMethod,
    make_trainer: Callable[..., L.Trainer],
    output_dir: Path,
    how_to_create: str = "make pretrain DATASET=<dataset> MODEL=<model>",
) -> dict:
    """Forget ``forget`` from the model at ``input_path``; write model.pt, metrics.json and
    receipt.json into ``output_dir`` (only once everything has succeeded). Returns metrics.json."""
    if not input_path.is_file():
        raise FileNotFoundError(
            f"no pretrained model at {input_path}; create it with `{how_to_create}` "
            "(or point input=... at a model file)"
        )
    state, meta = load_model(input_path)
    check_compatible(meta, datamodule, input_path)
    request = ForgetRequest.resolve(forget, datamodule.class_names, meta.get("forgotten_classes", []))
    train_counts = datamodule.dataset("train").tensors[1].bincount(minlength=datamodule.num_classes)
    empty = [c for c in request.forget_classes if train_counts[c] == 0]
    if empty:
        raise ValueError(f"forget classes {empty} have no training samples to unlearn from")

    net = build_net(meta)
    net.load_state_dict(state)
    module = UnlearnModule(net, method, request, TrainingData(datamodule, request))
    trainer = make_trainer(max_epochs=method.epochs)
    started = time.perf_counter()
    trainer.test(module, dataloaders=datamodule.test_dataloader(), verbose=False)
    before = module.last_evaluation
    eval_s = time.perf_counter() - started
    module.start_evaluation("after", fa_before=before["FA"])
    if method.from_scratch:  # retrain: same architecture, fresh (seeded) initialisation
        module.net.load_state_dict(build_net(meta).state_dict())
    loader = datamodule.unlearning_loader(request.all_forgotten, method.train_on, method.retain_fraction)
    started = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    fit_s = time.perf_counter() - started
    trainer.test(module, dataloaders=datamodule.test_dataloader(), verbose=False)
    after = module.last_evaluation

    report = {
        "request": {
            "forget_classes": list(request.forget_classes),
            "forget_class_names": [datamodule.class_names[c] for c in request.forget_classes],
            "previously_forgotten": list(request.previously_forgotten),
        },
        "method": method.config(),
        "before": before,
        "after": after,
        "timings_s": {**module.timings, "fit_total_s": fit_s, "evaluation_s": eval_s},
        "original_test_metrics": meta.get("test_metrics", {}),
    }
    if trainer.is_global_zero:
        out_meta = {**meta, "forgotten_classes": list(request.all_forgotten), "unlearned_by": method.config()}
        output_dir.mkdir(parents=True, exist_ok=True)
        # order matters: a receipt exists only beside the model and metrics it describes
        out_sha = save_model(output_dir / "model.pt", module.net, out_meta)
        save_json(output_dir / "metrics.json", report)
        receipt = erasure_receipt(
            request,
            datamodule.class_names,
            meta["data"],
            method.config(),
            sha256_file(input_path),
            out_sha,
            before,
            after,
        )
        save_json(output_dir / "receipt.json", receipt)
        log.info("\n%s", format_table(before, after, request, datamodule.class_names))
    return report


def format_table(before: dict, after: dict, request: ForgetRequest, class_names: list[str]) -> str:
    """The before/after console table, in the paper's column order."""
    names = ", ".join(class_names[c] for c in request.all_forgotten)
    rows = [f"forgetting {names}", f"{'':8}" + "".join(f"{k:>9}" for k in METRIC_ORDER)]
    for tag, values in (("before", before), ("after", after)):
        cells = "".join(f"{values.get(k, float('nan')):9.2f}" for k in METRIC_ORDER)
        rows.append(f"{tag:8}{cells}")
    return "\n".join(rows)
