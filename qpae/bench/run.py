"""Running benchmark cells: pretrained models per (dataset, seed), then unlearning per cell."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from qpae.audit import plots
from qpae.audit.run import AuditSettings, load_net, random_init_like
from qpae.audit.run import audit as run_audit
from qpae.bench.plan import Cell, dataset_spec
from qpae.checkpoints import save_json, sha256_file
from qpae.data.store import FEATURE_VERSION
from qpae.pipeline.config import compose
from qpae.pipeline.pretrain import pretrain
from qpae.pipeline.unlearn import unlearning_trainer_factory
from qpae.unlearning.request import ClassSelection, plan_requests
from qpae.unlearning.runner import unlearn_request

log = logging.getLogger(__name__)

QUIET = [
    "logger=none",
    "record_latest=false",
    "trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
]


class BenchRunner:
    """Runs cells of one bench profile under ``results_dir``; every result is cached on disk,
    keyed by content: a cell by its settings (:meth:`Cell.key`), an audit by its settings and
    the sha256 of every audited model file."""

    def __init__(
        self, bench: dict, results_dir: Path, base_overrides: list[str], run_overrides: Sequence[str] = ()
    ) -> None:
        self.bench, self.results_dir = bench, results_dir
        self.run_overrides = list(run_overrides)
        self.base = [*base_overrides, *self.run_overrides]
        self._datamodules: dict[str, object] = {}

    def _data_overrides(self, dataset: str) -> list[str]:
        spec = self.bench["datasets"][dataset]
        return [*self.base, *spec["overrides"], f"model={spec['model']}", *QUIET]

    def datamodule(self, dataset: str):
        """One set-up datamodule per dataset, shared by its cells (features decoded once)."""
        if dataset not in self._datamodules:
            cfg = compose(
                "unlearn", [*self._data_overrides(dataset), f"paths.output_dir={self.results_dir}/tmp"]
            )
            dm = hydra.utils.instantiate(cfg.dataset)
            dm.prepare_data()
            dm.setup()
            self._datamodules[dataset] = dm
        return self._datamodules[dataset]

    def class_names(self) -> dict[str, list[str]]:
        """Every dataset's class names, which the plan resolves scenario names against."""
        return {name: list(self.datamodule(name).class_names) for name in self.bench["datasets"]}

    def pretrained(self, dataset: str, seed: int) -> Path:
        """The original model of (dataset, seed), trained once; its wall time beside it.

        Its file name carries a digest of everything that decides it: the dataset spec, the run
        overrides (e.g. trainer=gpu), the composed pretraining recipe (model, optimizer, trainer,
        callbacks such as early stopping, dataset settings) and the feature format version."""
        spec = self.bench["datasets"][dataset]
        cfg = compose(
            "pretrain",
            [
                *self._data_overrides(dataset),
                f"seed={seed}",
                f"trainer.max_epochs={spec['pretrain_epochs']}",
                f"paths.output_dir={self.results_dir}/pretrain/{dataset}-s{seed}",
                "overwrite=true",  # the bench's own cache: a model without its timing is re-made
            ],
        )
        identity = {
            "dataset": dataset_spec(self.bench, dataset),
            "run_overrides": self.run_overrides,
            "recipe": pretraining_identity(cfg),
            "feature_format": FEATURE_VERSION,
        }
        tag = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]
        path = self.results_dir / "models" / f"{dataset}-{spec['model']}-{tag}-s{seed}.pt"
        timing = path.with_suffix(".json")
        if not timing.exists():
            OmegaConf.update(cfg, "output", str(path))
            start = time.perf_counter()
            metrics = pretrain(cfg)
            save_json(timing, {"pretrain_s": time.perf_counter() - start, "test": metrics})
        return path

    def configure(self, cell: Cell) -> tuple[DictConfig, dict]:
        """The cell's unlearning config and its method's resolved settings."""
        base = [
            *self._data_overrides(cell.dataset),
            f"method={cell.method}",
            f"seed={cell.seed}",
            f"paths.output_dir={self.results_dir}/tmp",
        ]
        if not any(o.startswith("schedule=") for o in cell.overrides):
            # the profile's schedule (default: the paper's fixed epochs, so that baselines that
            # cannot erase still get a row); a variant may ask for schedule=auto
            base.append(f"schedule={self.bench.get('schedule', 'paper')}")
        # shared settings reach only the methods that have them (one-shot SSD has no epochs)
        method_keys = compose("unlearn", base).unlearn
        shared = [
            o
            for o in self.bench.get("unlearn_overrides", [])
            if o.split("=", 1)[0].removeprefix("unlearn.") in method_keys
        ]
        overrides = [*base, *shared, *cell.overrides]
        if cell.method == "retrain":
            # the original's recorded pretraining recipe (epochs actually run, optimizer, schedule),
            # never the bench's shared unlearning schedule; all retained data
            overrides += ["unlearn.epochs=null", "unlearn.retain_fraction=1.0"]
        cfg = compose("unlearn", overrides)
        return cfg, OmegaConf.to_container(cfg.unlearn, resolve=True)

    def run(self, cell: Cell) -> dict:
        """The cell's result, computed now or read back from an earlier run with the same key."""
        cfg, settings = self.configure(cell)
        source = self.pretrained(cell.dataset, cell.seed)
        original_sha256 = sha256_file(source)  # a re-trained original re-runs its cells
        key = cell.key({"method": settings, "original_sha256": original_sha256})
        out = self.results_dir / "cells" / key
        done = out / "result.json"
        if done.exists():
            cached = json.loads(done.read_text())
            # the key is a digest: compare the settings themselves too before trusting it
            if (
                cached.get("method_settings") == settings
                and cached.get("context") == cell.context
                and cached.get("original_sha256") == original_sha256
            ):
                return cached
            log.info("%s: cached settings differ from the config's; running it again", key)
        if out.exists():  # a stale or interrupted run: this folder is the bench's own cache
            shutil.rmtree(out)
        dm = self.datamodule(cell.dataset)
        # one datamodule per dataset keeps its features in memory once; each cell's seed orders
        # its batches and draws its retained subsample
        dm.order_seed = cell.seed
        # a pretrained model has forgotten nothing; request k starts from request k-1's model
        requests = plan_requests([ClassSelection(indices=r) for r in cell.requests], dm.class_names, ())

        make_trainer = unlearning_trainer_factory(cfg.trainer, [])
        L.seed_everything(cell.seed, workers=True)
        start, reports, current = time.perf_counter(), [], source
        for k, request in enumerate(requests, start=1):
            method = hydra.utils.instantiate(cfg.unlearn)
            step_dir = out / f"request-{k:02d}"
            reports.append(unlearn_request(current, request, dm, method, make_trainer, step_dir))
            current = step_dir / "model.pt"
        result = {
            "cell": {
                "scenario": cell.scenario,
                "dataset": cell.dataset,
                "method": cell.method,
                "variant": cell.variant,
                "seed": cell.seed,
                "requests": [list(r) for r in cell.requests],
                "overrides": list(cell.overrides),
            },
            "key": key,
            "reports": reports,
            "wall_s": time.perf_counter() - start,
            "pretrain_s": json.loads(source.with_suffix(".json").read_text())["pretrain_s"],
            "original": str(source),
            "original_sha256": original_sha256,
            "model": str(current),
            "method_settings": settings,
            "context": cell.context,
        }
        save_json(done, result)
        return result

    def audit(self, key: tuple, models: dict[str, Path], settings: dict) -> dict:
        """Audit one group's models beside the original and a random-init floor (cached).

        The cache key is the settings and the sha256 of every audited model file, the original
        included: a model re-trained into the same path, or a changed setting, audits again."""
        scenario, dataset, seed, forget = key
        original = self.pretrained(dataset, seed)
        settings = {**settings, "seed": seed}
        files = {"original": original, **models}
        identity = {
            "forget": list(forget),
            "models": {name: sha256_file(path) for name, path in sorted(files.items())},
            "settings": settings,
        }
        tag = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
        done = (
            self.results_dir
            / "audit"
            / f"{scenario}-{dataset}-s{seed}-f{'-'.join(map(str, forget))}-{tag}.json"
        )
        figures = done.with_suffix("")
        if done.exists():
            cached = json.loads(done.read_text())
            if cached.get("identity") == identity:
                return {**cached, "figures": str(figures)}
        nets = {
            "original": load_net(original),
            **{m: load_net(p) for m, p in sorted(models.items())},
            "random_init": random_init_like(original, seed),
        }
        audit_settings = AuditSettings(**settings)
        results, raws = run_audit(nets, self.datamodule(dataset), forget, audit_settings)
        figures.mkdir(parents=True, exist_ok=True)
        plots.audit_figures(raws, figures, audit_settings.min_clips_per_bin)
        entry = {
            "scenario": scenario,
            "dataset": dataset,
            "seed": seed,
            "forget": list(forget),
            "results": results,
            "identity": identity,
        }
        save_json(done, entry)
        return {**entry, "figures": str(figures)}


def pretraining_identity(cfg: DictConfig) -> dict:
    """The parts of a composed pretraining config that decide the model, without the paths that
    only say where things are written."""
    resolved = {
        group: OmegaConf.to_container(cfg[group], resolve=True)
        for group in ("model", "module", "trainer", "callbacks", "dataset")
        if cfg.get(group) is not None
    }
    resolved["trainer"].pop("default_root_dir", None)
    for callback in (resolved.get("callbacks") or {}).values():
        if isinstance(callback, dict):
            callback.pop("dirpath", None)
    # where data is and where batches are held on an accelerator do not change the model
    for key in ("data_dir", "cache_dir", "device_cache_mb"):
        resolved["dataset"].pop(key, None)
    return resolved


def audit_groups(
    results: list[dict], scenarios: list[str], seeds: list[int] | None = None
) -> dict[tuple, dict[str, Path]]:
    """(scenario, dataset, seed, forget) → {model name: unlearned model file} for audited
    scenarios; a variant other than ``default``/``full`` is named ``method (variant)`` as in the
    report."""
    groups: dict[tuple, dict[str, Path]] = {}
    for res in results:
        cell = res["cell"]
        if seeds is not None and cell["seed"] not in seeds:
            continue
        if cell["scenario"] in scenarios and len(cell["requests"]) == 1:
            key = (cell["scenario"], cell["dataset"], cell["seed"], tuple(cell["requests"][0]))
            name = cell["method"]
            if cell["variant"] not in ("default", "full"):
                name = f"{name} ({cell['variant']})"
            groups.setdefault(key, {})[name] = Path(res["model"])
    return groups
