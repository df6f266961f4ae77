"""Running benchmark cells: pretrained models per (dataset, seed), then unlearning per cell."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import hydra
import lightning as L
from omegaconf import OmegaConf

from qpae.audit import plots
from qpae.audit.run import AuditSettings, load_net, random_init_like
from qpae.audit.run import audit as run_audit
from qpae.bench.plan import Cell
from qpae.checkpoints import save_json
from qpae.cli.common import compose, unlearning_trainer_factory
from qpae.cli.pretrain import pretrain
from qpae.unlearning.runner import unlearn_request

log = logging.getLogger(__name__)

QUIET = ["logger=none", "trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false"]


class BenchRunner:
    """Runs cells of one bench profile under ``results_dir``; every result is cached on disk."""

    def __init__(self, bench: dict, results_dir: Path, base_overrides: list[str]) -> None:
        self.bench, self.results_dir, self.base = bench, results_dir, base_overrides
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

    def num_classes(self) -> dict[str, int]:
        return {name: self.datamodule(name).num_classes for name in self.bench["datasets"]}

    def pretrained(self, dataset: str, seed: int) -> Path:
        """The original model of (dataset, seed), trained once; its wall time beside it."""
        spec = self.bench["datasets"][dataset]
        tag = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
        path = self.results_dir / "models" / f"{dataset}-{spec['model']}-{tag}-s{seed}.pt"
        timing = path.with_suffix(".json")
        if not timing.exists():
            epochs = self.bench["datasets"][dataset]["pretrain_epochs"]
            cfg = compose(
                "pretrain",
                [
                    *self._data_overrides(dataset),
                    f"seed={seed}",
                    f"trainer.max_epochs={epochs}",
                    f"output={path}",
                    f"paths.output_dir={self.results_dir}/pretrain/{dataset}-s{seed}",
                ],
            )
            start = time.perf_counter()
            metrics = pretrain(cfg)
            save_json(timing, {"pretrain_s": time.perf_counter() - start, "test": metrics})
        return path

    def run(self, cell: Cell) -> dict:
        """The cell's result, computed now or read back from an earlier run."""
        out = self.results_dir / "cells" / cell.key
        done = out / "result.json"
        base = [
            *self._data_overrides(cell.dataset),
            f"method={cell.method}",
            f"seed={cell.seed}",
            f"paths.output_dir={out}",
        ]
        # shared settings reach only the methods that have them (one-shot SSD has no epochs)
        method_keys = compose("unlearn", base).unlearn
        shared = [
            o
            for o in self.bench.get("unlearn_overrides", [])
            if o.split("=", 1)[0].removeprefix("unlearn.") in method_keys
        ]
        overrides = [*base, *shared, *cell.overrides]
        if cell.method == "retrain":  # the same recipe as pretraining, from scratch, all retained data
            epochs = self.bench["datasets"][cell.dataset]["pretrain_epochs"]
            overrides += [f"unlearn.epochs={epochs}", "unlearn.retain_fraction=1.0"]
        cfg = compose("unlearn", overrides)
        # the resolved method settings belong to the result: editing a method's YAML re-runs its cells
        settings = OmegaConf.to_container(cfg.unlearn, resolve=True)
        if done.exists():
            cached = json.loads(done.read_text())
            if cached.get("method_settings") == settings:
                return cached
            log.info("%s: method settings changed since the cached run; running it again", cell.key)
        source = self.pretrained(cell.dataset, cell.seed)
        dm = self.datamodule(cell.dataset)

        make_trainer = unlearning_trainer_factory(cfg.trainer, [])
        L.seed_everything(cell.seed, workers=True)
        start, reports, current = time.perf_counter(), [], source
        for k, request in enumerate(cell.requests, start=1):
            method = hydra.utils.instantiate(cfg.unlearn)
            step_dir = out / f"request-{k:02d}"
            reports.append(unlearn_request(current, list(request), dm, method, make_trainer, step_dir))
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
            "reports": reports,
            "wall_s": time.perf_counter() - start,
            "pretrain_s": json.loads(source.with_suffix(".json").read_text())["pretrain_s"],
            "original": str(source),
            "model": str(current),
            "method_settings": settings,
        }
        save_json(done, result)
        return result

    def audit(self, key: tuple, models: dict[str, Path], settings: dict) -> dict:
        """Audit one group's models beside the original and a random-init floor (cached)."""
        scenario, dataset, seed, forget = key
        # the key names the audited models and settings: adding a method re-runs the group
        tag = hashlib.sha256(
            json.dumps(
                {"models": {m: str(p) for m, p in models.items()}, "settings": settings}, sort_keys=True
            ).encode()
        ).hexdigest()[:8]
        done = (
            self.results_dir
            / "audit"
            / f"{scenario}-{dataset}-s{seed}-f{'-'.join(map(str, forget))}-{tag}.json"
        )
        figures = done.with_suffix("")
        if done.exists():
            return {**json.loads(done.read_text()), "figures": str(figures)}
        original = self.pretrained(dataset, seed)
        nets = {
            "original": load_net(original),
            **{m: load_net(p) for m, p in sorted(models.items())},
            "random_init": random_init_like(original, seed),
        }
        results, raws = run_audit(
            nets, self.datamodule(dataset), forget, AuditSettings(**{**settings, "seed": seed})
        )
        figures.mkdir(parents=True, exist_ok=True)
        plots.audit_figures(raws, figures)
        entry = {
            "scenario": scenario,
            "dataset": dataset,
            "seed": seed,
            "forget": list(forget),
            "results": results,
        }
        save_json(done, entry)
        return {**entry, "figures": str(figures)}


def audit_groups(
    results: list[dict], scenarios: list[str], seeds: list[int] | None = None
) -> dict[tuple, dict[str, Path]]:
    """(scenario, dataset, seed, forget) → {method: unlearned model file} for audited scenarios."""
    groups: dict[tuple, dict[str, Path]] = {}
    for res in results:
        cell = res["cell"]
        if seeds is not None and cell["seed"] not in seeds:
            continue
        if (
            cell["scenario"] in scenarios
            and cell["variant"] in ("default", "full")
            and len(cell["requests"]) == 1
        ):
            key = (cell["scenario"], cell["dataset"], cell["seed"], tuple(cell["requests"][0]))
            groups.setdefault(key, {})[cell["method"]] = Path(res["model"])
    return groups
