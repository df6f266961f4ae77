"""QPAudioEraser figures: pretrain one model per seed, unlearn, tabulate before/after over seeds.

    python -m qpae.benchmarks.unlearning --scenario fsdd --data-dir ../shared/data
    python -m qpae.benchmarks.unlearning --scenario synthetic40

Each seed pretrains its own model (wall time recorded), then runs every forget set of the
scenario on it. Writes ``<root>/<scenario>/results.json`` and ``report.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from qpae.cli.common import compose
from qpae.cli.pretrain import pretrain
from qpae.cli.unlearn import unlearn
from qpae.unlearning.runner import METRIC_ORDER

SCENARIOS = {
    "fsdd": {
        "data": ["dataset=fsdd"],
        "model": "resnet18",
        "forget_sets": [[0], [0, 3]],
        "pretrain_epochs": 10,
    },
    "synthetic40": {
        "data": ["dataset=synthetic_speakers", "dataset.n_speakers=40", "dataset.repetitions=5"],
        "model": "resnet18",
        "forget_sets": [[0], [0, 20]],
        "pretrain_epochs": 10,
    },
}


def run(scenario: str, seeds: list[int], root: Path, data_dir: str | None, unlearn_args: list[str]) -> list[dict]:
    spec = SCENARIOS[scenario]
    common = [f"paths.root={root}", *spec["data"], f"model={spec['model']}", "logger=none",
              "trainer.enable_progress_bar=false"] + ([f"paths.data={data_dir}"] if data_dir else [])
    rows = []
    for seed in seeds:
        model_file = root / scenario / f"pretrained-seed{seed}.pt"
        timing_file = model_file.with_suffix(".json")
        if timing_file.exists():  # reuse a finished pretraining (another unlearning setting)
            pretrain_s = json.loads(timing_file.read_text())["pretrain_s"]
        else:
            cfg = compose("pretrain", [*common, f"seed={seed}",
                                       f"trainer.max_epochs={spec['pretrain_epochs']}",
                                       f"paths.output_dir={root}/{scenario}/pretrain-seed{seed}",
                                       f"output={model_file}"])
            start = time.perf_counter()
            pretrain(cfg)
            pretrain_s = time.perf_counter() - start
            timing_file.write_text(json.dumps({"pretrain_s": pretrain_s}))
        for forget in spec["forget_sets"]:
            tag = "-".join(map(str, forget))
            run_dir = f"{root}/{scenario}/unlearn-{'-'.join(unlearn_args) or 'default'}-f{tag}-s{seed}"
            cfg = compose("unlearn", [*common, f"seed={seed}", f"input={model_file}",
                                      f"forget=[{','.join(map(str, forget))}]",
                                      f"paths.output_dir={run_dir}",
                                      *unlearn_args])
            start = time.perf_counter()
            [report] = unlearn(cfg)
            unlearn_s = time.perf_counter() - start
            rows.append({"seed": seed, "forget": forget, "before": report["before"],
                         "after": report["after"], "pretrain_s": pretrain_s, "unlearn_s": unlearn_s,
                         "timings_s": report["timings_s"], "method": report["method"]})
    return rows


def mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {sd:.2f}"


def report(rows: list[dict]) -> str:
    lines = []
    for forget in sorted({tuple(r["forget"]) for r in rows}):
        sel = [r for r in rows if tuple(r["forget"]) == forget]
        lines += [f"\n### forget {list(forget)} — {len(sel)} seeds (mean ± std)\n",
                  "| | " + " | ".join(METRIC_ORDER) + " |", "|---" * (len(METRIC_ORDER) + 1) + "|"]
        for tag in ("before", "after"):
            cells = [mean_std([r[tag].get(k, float("nan")) for r in sel]) for k in METRIC_ORDER]
            lines.append(f"| {tag} | " + " | ".join(cells) + " |")
        ratio = [100 * r["unlearn_s"] / r["pretrain_s"] for r in sel]
        lines.append(
            f"\nwall time: pretraining {mean_std([r['pretrain_s'] for r in sel])} s, unlearning "
            f"{mean_std([r['unlearn_s'] for r in sel])} s (of which training "
            f"{mean_std([r['timings_s']['train_s'] for r in sel])} s) = {mean_std(ratio)} % of pretraining"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", type=Path, default=Path("runs/bench-unlearning"))
    parser.add_argument("--data-dir", default=None, help="paths.data (holding fsdd/ etc.)")
    parser.add_argument("overrides", nargs="*", help="unlearn overrides, e.g. unlearn.retain_fraction=0.1")
    args = parser.parse_args()
    root = args.root.resolve()
    rows = run(args.scenario, args.seeds, root, args.data_dir, args.overrides)
    out = root / args.scenario
    tag = "-".join(args.overrides).replace("unlearn.", "").replace("=", "") or "default"
    (out / f"results-{tag}.json").write_text(json.dumps(rows, indent=2))
    text = f"## {args.scenario} {' '.join(args.overrides)}\n" + report(rows)
    (out / f"report-{tag}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
