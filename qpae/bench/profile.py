"""One bench profile end to end: its cells (resumable), the audit, the certification, the report and
the figures."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from qpae.bench import report
from qpae.bench.certify import certify_all, check_spec
from qpae.bench.plan import plan
from qpae.bench.run import BenchRunner, audit_groups
from qpae.pipeline.device import GPU_ACCELERATORS, check_device
from qpae.tracking import log_results

log = logging.getLogger(__name__)


def bench(cfg: DictConfig) -> Path:
    """Run every cell (skipping finished ones) and write results.csv, report.md and plots.

    report.md is written last, so that the wall time it states is the whole invocation's: the
    datasets' set-up, every cell, the audit and the figures."""
    started = time.perf_counter()
    # resolve everything now: composing the runs' configs replaces Hydra's runtime settings
    spec = OmegaConf.to_container(cfg.bench, resolve=True)
    results_dir, profile = Path(cfg.results_dir).resolve(), cfg.bench_name
    run_overrides = list(cfg.run_overrides)
    for override in run_overrides:  # trainer=gpu on a machine without one: refused before any cell
        key, _, value = str(override).partition("=")
        if key.lstrip("+") == "trainer" and value in GPU_ACCELERATORS:
            check_device({"accelerator": value})
    use_wandb = bool(cfg.wandb)
    runner = BenchRunner(spec, results_dir, [f"paths.root={Path(cfg.paths.root).resolve()}"], run_overrides)
    # scenario class names resolve against each dataset's classes: a typo fails here, not mid-run
    cells = plan(spec, runner.class_names(), run_overrides)
    if spec.get("certify"):
        check_spec(spec["certify"], spec["datasets"])
    results = []
    for i, cell in enumerate(cells, start=1):
        log.info("cell %d/%d: %s", i, len(cells), cell.name)
        results.append(runner.run(cell))
    rows = report.flatten(results)
    report.write_csv(rows, results_dir / "results.csv")
    audit_spec, audits = spec.get("audit"), []
    if audit_spec:
        groups = audit_groups(results, audit_spec["scenarios"], audit_spec.get("seeds"))
        ordered = report.in_report_order(groups)  # the report's order, so the log reads alike
        for i, key in enumerate(ordered, start=1):
            log.info("audit %d/%d: %s", i, len(groups), key)
            audits.append(runner.audit(key, groups[key], audit_spec.get("settings", {})))
    certificates, floors = certify_all(runner, spec["certify"]) if spec.get("certify") else ([], [])
    images = [
        p
        for p in (
            report.plot_frontier(rows, results_dir / "frontier.png"),
            report.plot_sweeps(rows, results_dir / "sweeps.png"),
            report.plot_sequential(rows, results_dir / "sequential.png"),
        )
        if p
    ]
    schedule = (
        f"Profile `{profile}`; seeds {spec['seeds']}; pretraining epochs "
        + ", ".join(f"{d}: {s['pretrain_epochs']} ({s['model']})" for d, s in spec["datasets"].items())
        + f"; unlearning overrides {spec.get('unlearn_overrides', [])} (retrain: the pretraining schedule)."
        f" This invocation: {time.perf_counter() - started:.0f} s wall time in all (set-up, cells,"
        " audit, certification and figures; finished cells, audits and certificates are read back, not run"
        " again)."
    )
    table = report.markdown(rows, schedule)
    if audit_spec:
        table += report.audit_markdown(audits, audit_spec.get("settings", {}).get("relearn_steps", 200))
    table += report.certify_markdown(certificates)
    table += report.noise_floor_markdown(floors)
    report.write_text(results_dir / "report.md", table)
    figures = {p.stem: p for p in images}
    for entry in audits:  # the audit's loss histograms, MIA ROC and relearn curves per group
        folder = Path(entry["figures"])
        figures.update({f"audit/{folder.name}/{p.stem}": p for p in sorted(folder.glob("*.png"))})
    if use_wandb:
        log_results("bench", results_dir, {"runs": rows}, figures, {"report": table})
    return results_dir
