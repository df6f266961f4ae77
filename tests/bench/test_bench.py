"""qpae-bench: the plan, a whole (tiny) run with its report, and resuming without recomputing."""

import csv
import json

import pytest

from qpae.bench.plan import Cell, forget_sets, plan
from qpae.cli.bench import bench


def test_forget_sets():
    assert forget_sets({"forget": [[0], [1, 2]]}, 10) == [((0,),), ((1, 2),)]
    assert forget_sets({"fraction": 0.1}, 40) == [((0, 10, 20, 30),)]
    assert forget_sets({"sequential": 3}, 9) == [((0,), (3,), (6,))]


def test_plan_expands_methods_variants_and_seeds():
    spec = {
        "seeds": [0, 1],
        "methods": ["qpae", "retrain"],
        "scenarios": {
            "single": {"datasets": ["a"], "forget": [[0]]},
            "ablation": {
                "datasets": ["a"],
                "forget": [[0]],
                "methods": ["qpae"],
                "variants": {"full": [], "no_mixing": ["unlearn.mixing=false"]},
            },
        },
    }
    cells = plan(spec, {"a": 5})
    assert len(cells) == 2 * 2 + 2 * 2
    assert len({c.key for c in cells}) == len(cells)
    assert Cell("s", "a", "qpae", "full", 0, ((0,),)).key == Cell("s", "a", "qpae", "full", 0, ((0,),)).key


@pytest.mark.slow
def test_smoke_bench_writes_report_and_resumes(make_config, tmp_path, monkeypatch):
    from qpae.bench.run import unlearn_request

    cfg = make_config("bench", "bench=smoke", "wandb=true")
    out = bench(cfg)
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    # single (2 methods) + sequential (2 methods × 2 requests) + ablation (3 variants)
    assert len(rows) == 2 + 4 + 3
    assert {r["method"] for r in rows} == {"qpae", "retrain"}
    report = (out / "report.md").read_text()
    assert "| retrain |" in report and "ΔRA vs retrain" in report and "qpae (lambda0.5)" in report
    for png in ("frontier.png", "sweeps.png", "sequential.png"):
        assert (out / png).stat().st_size > 5_000
    # the audit of the single scenario: every method beside the original and the floor
    assert "# Privacy audit" in report and "| random_init |" in report
    [audit_file] = (out / "audit").glob("*.json")
    assert set(json.loads(audit_file.read_text())["results"]) == {
        "original",
        "qpae",
        "retrain",
        "random_init",
    }
    [wandb_run] = (out / "wandb").glob("offline-run-*")
    media = [str(p.relative_to(wandb_run)) for p in (wandb_run / "files" / "media").rglob("*.*")]
    for name in ("frontier", "runs", "mia_roc", "relearn_curves", "loss_histograms"):
        assert any(name in m for m in media), (name, media)

    def no_recompute(*args, **kwargs):
        raise AssertionError("a finished cell was run again")

    monkeypatch.setattr("qpae.bench.run.unlearn_request", no_recompute)
    monkeypatch.setattr("qpae.bench.run.pretrain", no_recompute)
    bench(make_config("bench", "bench=smoke", "wandb=false"))
    assert (out / "report.md").read_text().split("This invocation")[0] == report.split("This invocation")[0]

    # a cell whose method settings differ from the config's (its YAML was edited) runs again, alone
    [edited] = (out / "cells").glob("single-tiny-qpae-*/result.json")
    cached = json.loads(edited.read_text())
    assert cached["method_settings"]["lambda_"] == 1.0
    edited.write_text(
        json.dumps({**cached, "method_settings": {**cached["method_settings"], "lambda_": 2.0}})
    )
    ran = []

    def counted(current, request, dm, method, *args):
        ran.append(method.name)
        return unlearn_request(current, request, dm, method, *args)

    monkeypatch.setattr("qpae.bench.run.unlearn_request", counted)
    bench(make_config("bench", "bench=smoke", "wandb=false"))
    assert ran == ["qpae"]
    assert json.loads(edited.read_text())["method_settings"]["lambda_"] == 1.0


@pytest.mark.parametrize("profile", ["cpu", "paper", "smoke", "qpae_figures"])
def test_every_bench_profile_composes_and_plans(make_config, profile):
    from omegaconf import OmegaConf

    cfg = make_config("bench", f"bench={profile}", "bench_real_data=/datasets")
    spec = OmegaConf.to_container(cfg.bench, resolve=True)
    fake_classes = {name: 40 for name in spec["datasets"]}
    cells = plan(spec, fake_classes)
    assert cells and len({c.key for c in cells}) == len(cells)
    assert {c.dataset for c in cells} <= set(spec["datasets"])
    # every dataset's overrides compose into a valid unlearning config
    for name, ds in spec["datasets"].items():
        for method in {c.method for c in cells if c.dataset == name}:
            make_config("unlearn", *ds["overrides"], f"model={ds['model']}", f"method={method}")


def test_gap_table_averages_the_distance_to_retrain_and_marks_the_closest_method():
    from qpae.bench.report import GAP_COLUMNS, gap_table

    def entry(retrain, a, b):
        return {
            "results": {
                m: dict.fromkeys(GAP_COLUMNS, v)
                for m, v in (("retrain", retrain), ("a", a), ("b", b), ("random_init", retrain))
            }
        }

    # seed 1: a is 0.2 off, b 0.1; seed 2: a 0.0, b 0.3 → a 0.1, b 0.2 on average
    lines = gap_table([entry(0.5, 0.7, 0.4), entry(0.5, 0.5, 0.8)], ["a", "b", "random_init"])
    rows = {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith("| ")}
    assert rows["a"].count("**0.1**") == len(GAP_COLUMNS)
    assert "**" not in rows["b"] and rows["b"].count("0.2") == len(GAP_COLUMNS)
    assert "**" not in rows["random_init"]  # the floor is never the "closest method"
