"""qpae-bench: the plan, a whole (tiny) run with its report, and resuming without recomputing."""

import csv
import json
import os
from pathlib import Path

import pytest

from qpae.bench import report
from qpae.bench.plan import Cell, forget_sets, plan
from qpae.bench.profile import bench
from qpae.bench.run import audit_groups
from qpae.unlearning.request import RequestError

NAMES = [f"c{i}" for i in range(10)]


def test_forget_sets():
    assert forget_sets({"forget_index": [[0], [1, 2]]}, NAMES) == [((0,),), ((1, 2),)]
    assert forget_sets({"fraction": 0.1}, [f"c{i}" for i in range(40)]) == [((0, 10, 20, 30),)]
    assert forget_sets({"sequential": 3}, NAMES[:9]) == [((0,), (3,), (6,))]


def test_forget_holds_names_and_forget_index_holds_indices():
    accents = ["arabic", "english", "french", "spanish"]
    assert forget_sets({"forget": [["spanish"]]}, accents) == [((3,),)]
    assert forget_sets({"forget": [["spanish", "arabic"]]}, accents) == [((0, 3),)]
    assert forget_sets({"forget_index": [[0]]}, accents) == [((0,),)]
    # a number in `forget` is a name, never silently an index
    with pytest.raises(RequestError, match="forget_index"):
        forget_sets({"forget": [[0]]}, accents)
    with pytest.raises(RequestError, match="unknown class 'swahili'.*3=spanish"):
        forget_sets({"forget": [["swahili"]]}, accents)
    with pytest.raises(RequestError, match="out of range"):
        forget_sets({"forget_index": [[4]]}, accents)
    with pytest.raises(ValueError, match="exactly one"):
        forget_sets({"forget": [["spanish"]], "forget_index": [[0]]}, accents)
    with pytest.raises(ValueError, match="exactly one"):
        forget_sets({}, accents)


def test_an_unknown_name_fails_at_plan_time_naming_the_scenario():
    spec = {
        "seeds": [0],
        "methods": ["qpae"],
        "datasets": {"a": {"overrides": [], "model": "m"}},
        "scenarios": {"accent": {"datasets": ["a"], "forget": [["spanish"]]}},
    }
    assert [c.requests for c in plan(spec, {"a": ["arabic", "spanish"]})] == [((1,),)]
    with pytest.raises(RequestError, match="scenario 'accent' on a: unknown class 'spanish'"):
        plan(spec, {"a": ["arabic", "english"]})
    spec["scenarios"]["accent"] = {"datasets": ["a"], "forget_index": [[0, 1]]}
    with pytest.raises(RequestError, match="nothing would be left to retain"):
        plan(spec, {"a": ["arabic", "english"]})


SPEC = {
    "seeds": [0, 1],
    "methods": ["qpae", "retrain"],
    "datasets": {"a": {"overrides": ["dataset=x"], "model": "m", "pretrain_epochs": 3}},
    "unlearn_overrides": ["unlearn.epochs=2"],
    "scenarios": {
        "single": {"datasets": ["a"], "forget_index": [[0]]},
        "ablation": {
            "datasets": ["a"],
            "forget_index": [[0]],
            "methods": ["qpae"],
            "variants": {"full": [], "no_mixing": ["unlearn.mixing=false"]},
        },
    },
}
SETTINGS = {"_target_": "qpae.unlearning.methods.qpae.QPAudioEraser", "epochs": 2, "lambda_": 1.0}


def test_plan_expands_methods_variants_and_seeds():
    cells = plan(SPEC, {"a": NAMES[:5]})
    assert len(cells) == 2 * 2 + 2 * 2
    assert len({c.key(SETTINGS) for c in cells}) == len(cells)
    assert Cell("s", "a", "qpae", "full", 0, ((0,),)).key(SETTINGS) == Cell(
        "s", "a", "qpae", "full", 0, ((0,),)
    ).key(SETTINGS)


def test_retrain_runs_once_whatever_the_variants_and_a_scenario_may_set_its_seeds():
    spec = {
        **SPEC,
        "scenarios": {
            "single": {
                "datasets": ["a"],
                "forget_index": [[0]],
                "methods": ["qpae", "retrain"],
                "seeds": [5],
                "variants": {"auto": ["schedule=auto"], "paper": ["schedule=paper"]},
            }
        },
    }
    cells = plan(spec, {"a": NAMES[:5]})
    assert sorted((c.method, c.variant, c.seed, c.overrides) for c in cells) == [
        ("qpae", "auto", 5, ("schedule=auto",)),
        ("qpae", "paper", 5, ("schedule=paper",)),
        ("retrain", "default", 5, ()),
    ]


def test_audit_groups_name_each_variant_as_the_report_does():
    def result(method, variant, seed=0):
        cell = {"scenario": "single", "dataset": "a", "method": method, "variant": variant, "seed": seed}
        return {"cell": {**cell, "requests": [[0]]}, "model": f"{method}-{variant}.pt"}

    results = [
        result("retrain", "default"),
        result("qpae", "auto"),
        result("qpae", "full"),
        result("qpae", "auto", 1),
    ]
    groups = audit_groups(results, ["single"], seeds=[0])
    assert list(groups) == [("single", "a", 0, (0,))]
    assert sorted(groups[("single", "a", 0, (0,))]) == ["qpae", "qpae (auto)", "retrain"]
    assert audit_groups(results, ["other"]) == {}


def test_a_cells_key_follows_its_settings_not_only_its_name():
    [cell, *_] = plan(SPEC, {"a": NAMES[:5]})
    key = cell.key(SETTINGS)
    assert key.startswith(cell.name)
    # a method setting (e.g. its YAML was edited)
    assert cell.key({**SETTINGS, "lambda_": 2.0}) != key
    # run_overrides reach every run (e.g. trainer=gpu): they are part of the key
    [gpu, *_] = plan(SPEC, {"a": NAMES[:5]}, run_overrides=["trainer=gpu"])
    assert (gpu.name, gpu.requests) == (cell.name, cell.requests) and gpu.key(SETTINGS) != key
    # the dataset spec and the shared unlearning overrides
    longer = {**SPEC, "datasets": {"a": {**SPEC["datasets"]["a"], "pretrain_epochs": 4}}}
    assert plan(longer, {"a": NAMES[:5]})[0].key(SETTINGS) != key
    shared = {**SPEC, "unlearn_overrides": ["unlearn.epochs=3"]}
    assert plan(shared, {"a": NAMES[:5]})[0].key(SETTINGS) != key
    # ... but not the list of methods skipped on the dataset
    skipping = {**SPEC, "datasets": {"a": {**SPEC["datasets"]["a"], "exclude_methods": ["fisher"]}}}
    assert plan(skipping, {"a": NAMES[:5]})[0].key(SETTINGS) == key
    # a variant's overrides
    variants = [c for c in plan(SPEC, {"a": NAMES[:5]}) if c.scenario == "ablation" and c.seed == 0]
    assert len({c.key(SETTINGS) for c in variants}) == 2


@pytest.mark.slow
def test_smoke_bench_writes_report_and_resumes(make_config, tmp_path, monkeypatch):
    from qpae.bench.run import unlearn_request

    # W&B stages logged tables under $WANDB_DATA_DIR (default ~/.local/share/wandb): keep it here
    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))

    cfg = make_config("bench", "bench=smoke", "wandb=true")
    out = bench(cfg)
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    # single (2 methods) + sequential (2 methods × 2 requests) + ablation (3 variants)
    assert len(rows) == 2 + 4 + 3
    assert {r["method"] for r in rows} == {"qpae", "retrain"}
    report = (out / "report.md").read_text()
    assert "| retrain |" in report and "ΔRA vs retrain" in report and "qpae (lambda0.5)" in report
    assert "| ERB | ERB_paper |" in report and "differ from the paper" in report
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # atomic writes leave none
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
    # the certification: N = 6 runs of qpae against 6 retrained models, with its null and power tests
    assert "# Certification" in report and "| qpae |" in report.split("# Certification")[1]
    [certificate] = (out / "certify").glob("tiny-qpae-n6-*/certificate/certificate.json")
    assert json.loads(certificate.read_text())["n"] == 6
    [wandb_run] = (out / "wandb").glob("offline-run-*")
    media = [str(p.relative_to(wandb_run)) for p in (wandb_run / "files" / "media").rglob("*.*")]
    for name in ("frontier", "runs", "mia_roc", "relearn_curves", "loss_histograms"):
        assert any(name in m for m in media), (name, media)

    def no_recompute(*args, **kwargs):
        raise AssertionError("a finished cell was run again")

    monkeypatch.setattr("qpae.bench.run.unlearn_request", no_recompute)
    monkeypatch.setattr("qpae.bench.run.pretrain", no_recompute)
    monkeypatch.setattr("qpae.bench.certify.certify", no_recompute)  # the certificate is read back
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


# 40 fake class names per dataset with the paper's "spanish" at a known index
FAKE_CLASSES = [f"class{i:02d}" for i in range(40)]
FAKE_CLASSES[7] = "spanish"


PROFILES = sorted(p.stem for p in (Path(__file__).parents[2] / "conf" / "bench").glob("*.yaml"))


@pytest.mark.parametrize("profile", PROFILES)
def test_every_bench_profile_composes_and_plans(make_config, profile):
    from omegaconf import OmegaConf

    cfg = make_config("bench", f"bench={profile}", "bench_real_data=/datasets")
    spec = OmegaConf.to_container(cfg.bench, resolve=True)
    cells = plan(spec, dict.fromkeys(spec["datasets"], FAKE_CLASSES), list(cfg.run_overrides))
    keys = {c.key({"method": c.method}) for c in cells}
    assert (cells or spec.get("certify")) and len(keys) == len(cells)
    if spec.get("certify"):  # certified datasets and methods exist and compose
        assert set(spec["certify"]["datasets"]) <= set(spec["datasets"])
        for name in spec["certify"]["datasets"]:
            ds = spec["datasets"][name]
            for method in spec["certify"]["methods"]:
                make_config("certify", *ds["overrides"], f"model={ds['model']}", f"method={method}")
    assert {c.dataset for c in cells} <= set(spec["datasets"])
    for scenario in spec["scenarios"].values():
        assert sum(k in scenario for k in ("forget", "forget_index", "fraction", "sequential")) == 1
    # every dataset's overrides, with every variant's, compose into a valid unlearning config
    for name, ds in spec["datasets"].items():
        for method, overrides in {(c.method, c.overrides) for c in cells if c.dataset == name}:
            make_config("unlearn", *ds["overrides"], f"model={ds['model']}", f"method={method}", *overrides)
    if profile == "paper":
        # the paper fine-tunes ImageNet weights, and its accent scenario forgets Spanish
        for ds in spec["datasets"].values():
            model = make_config("pretrain", *ds["overrides"], f"model={ds['model']}").model
            assert model.pretrained is True, ds
        accent = {c.requests for c in cells if c.scenario == "accent"}
        assert accent == {((FAKE_CLASSES.index("spanish"),),)}


def test_paper_accent_scenario_resolves_spanish_on_the_papers_accent_list():
    from qpae.data.accent_archive import PAPER_ACCENTS

    classes = sorted(PAPER_ACCENTS)  # the datamodule's class order
    assert forget_sets({"forget": [["spanish"]]}, classes) == [((classes.index("spanish"),),)]
    assert classes.index("spanish") != 0  # index 0, the old setting, is another accent


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


def test_gap_table_without_any_retrain_shows_dashes_and_says_so():
    from qpae.bench.report import GAP_COLUMNS, audit_markdown, gap_table

    entries = [{"results": {m: dict.fromkeys(GAP_COLUMNS, 0.5) for m in ("original", "a", "random_init")}}]
    lines = gap_table(entries, ["original", "a", "random_init"])
    assert "no retrain ran" in lines[0]
    rows = [line for line in lines if line.startswith("| a |")]
    assert rows and rows[0].count("—") == len(GAP_COLUMNS) and "**" not in rows[0]
    # the whole audit section renders too
    audit = [{"scenario": "single", "dataset": "d", "forget": [0], **entries[0]}]
    assert "no retrain ran" in audit_markdown(audit, relearn_steps=10)


def test_gap_table_ignores_seeds_without_retrain():
    from qpae.bench.report import GAP_COLUMNS, gap_table

    with_retrain = {"results": {m: dict.fromkeys(GAP_COLUMNS, v) for m, v in (("retrain", 0.5), ("a", 0.7))}}
    without = {"results": {"a": dict.fromkeys(GAP_COLUMNS, 9.0)}}
    lines = gap_table([with_retrain, without], ["a"])
    [row] = [line for line in lines if line.startswith("| a |")]
    assert row.count("**0.2**") == len(GAP_COLUMNS)


def report_rows(methods=("qpae",)):
    metrics = dict.fromkeys(("FA", "FAR", "RA", "FRR", "PER", "IL", "ERB", "ERB_paper"), 50.0)
    return report.flatten(
        [
            {
                "cell": {
                    "scenario": "single",
                    "dataset": "d",
                    "method": m,
                    "variant": "default",
                    "seed": 0,
                    "requests": [[0]],
                },
                "reports": [{"before": metrics, "after": metrics, "timings_s": {"train_s": 1.0}}],
                "wall_s": 2.0,
                "pretrain_s": 10.0,
            }
            for m in methods
        ]
    )


def test_fit_time_is_a_share_of_the_same_seeds_retrain_and_a_sequence_sums_its_requests():
    metrics = dict.fromkeys(("FA", "FAR", "RA", "FRR", "PER", "IL", "ERB", "ERB_paper"), 50.0)

    def result(method, seed, fits, requests):
        reports = [
            {"before": metrics, "after": metrics, "timings_s": {"train_s": 1.0, "fit_total_s": f}}
            for f in fits
        ]
        cell = {"scenario": "single", "dataset": "d", "method": method, "variant": "default", "seed": seed}
        return {"cell": {**cell, "requests": requests}, "reports": reports, "wall_s": 1.0, "pretrain_s": 1.0}

    rows = report.flatten(
        [
            result("retrain", 0, [100.0], [[0, 1]]),
            result("retrain", 1, [200.0], [[0, 1]]),
            result("qpae", 0, [2.0], [[0, 1]]),
            result("qpae", 1, [2.0], [[0, 1]]),
        ]
    )
    [qpae] = [line for line in report.markdown(rows, "s").splitlines() if line.startswith("| qpae |")]
    assert "| 1.5 ± 0.7 |" in qpae  # 2 % and 1 %, each against its own seed's retrain
    sequence = report.flatten(
        [result("retrain", 0, [100.0], [[0], [1]]), result("qpae", 0, [2.0, 3.0], [[0], [1]])]
    )
    [qpae] = [line for line in report.markdown(sequence, "s").splitlines() if line.startswith("| qpae |")]
    assert "| 5.0 ± 0.0 |" in qpae  # both requests' fits against one retrain


def test_certification_table_has_one_row_per_method_beside_the_null_and_power_tests():
    def entry(method, valid):
        summary = {"median": 1.0, "p95": 2.0, "lower_median": 0.0, "lower_p95": 0.5}
        return {
            "dataset": "d",
            "method": method,
            "forget_class_names": ["theo"],
            "n": 16,
            "epsilon": {
                "forget": summary,
                "null": {**summary, "median": 1.5},
                "power": {**summary, "lower_median": 1.3},
            },
            "score": 0.25,
            "RA": {"unlearned": 90.0, "retrain": 91.0},
            "valid": valid,
            "wall_s": 40.0,
            "ensembles": {
                "unlearned": {"build_wall_s": 30.0},
                "retrain": {"member_fit_s": [10.0, 12.0, 20.0]},
            },
        }

    text = report.certify_markdown([entry("qpae", True), entry("finetune", False)])
    assert "## d, forget ['theo'] (N = 16)" in text
    assert (
        "| qpae | 1.00 | 2.00 | 0.00 | 0.50 | 0.250 | 90.0 (91.0) | 1.50 / 0.00 | 1.30 | yes | 40 (30) |"
        in text
    )
    assert "| finetune |" in text and "| no | 40 (30) |" in text
    assert "Retrain ensemble: 3 members, fit 12 s median each, 42 s in all" in text
    assert report.certify_markdown([]) == ""


def test_noise_floor_report_lists_each_n_in_order():
    summary = {"median": 1.5, "p95": 2.5, "lower_median": 0.0, "lower_p95": 0.25, "lower_max": 0.5}
    floor = {
        "dataset": "d",
        "forget_class_names": ["theo"],
        "by_n": {16: {**summary, "lower_ceiling": 1.35}, 8: {**summary, "lower_ceiling": 0.54}},
        "member_fit_s": [10.0, 30.0, 20.0],
        "build_wall_s": 61.0,
    }
    text = report.noise_floor_markdown([floor])
    rows = [line for line in text.splitlines() if line.startswith("| 8 ") or line.startswith("| 16 ")]
    assert rows == [
        "| 8 | 1.50 | 2.50 | 0.00 | 0.25 | 0.50 | 0.54 |",
        "| 16 | 1.50 | 2.50 | 0.00 | 0.25 | 0.50 | 1.35 |",
    ]
    assert "3 retrain members, fit 20 s median each (10–30); 61 s" in text
    assert report.noise_floor_markdown([]) == ""


def test_report_without_retrain_says_so_and_notes_the_deviating_columns():
    text = report.markdown(report_rows(), "schedule")
    assert "No `retrain` ran on this dataset and forget set" in text
    assert "| — | — |" in text  # ΔRA, ΔFA
    header = text.split("## ")[0]
    for column in ("**FRR**", "**PER**", "**ERB**", "**ERB_paper**"):
        assert column in header, column
    assert "No `retrain` ran" not in report.markdown(report_rows(("qpae", "retrain")), "schedule")


def test_report_files_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    rows = report_rows()
    report.write_csv(rows, tmp_path / "results.csv")
    report.write_text(tmp_path / "report.md", "old report")
    before = (tmp_path / "results.csv").read_text()
    assert "ERB_paper" in before.splitlines()[0]

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        report.write_text(tmp_path / "report.md", "new report")
    with pytest.raises(OSError, match="disk full"):
        report.write_csv(rows, tmp_path / "results.csv")
    monkeypatch.undo()
    assert (tmp_path / "report.md").read_text() == "old report"
    assert (tmp_path / "results.csv").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md", "results.csv"]  # no temp left
    # a row the CSV writer refuses fails before the file is touched
    with pytest.raises(ValueError):
        report.write_csv([*rows, {**rows[0], "unexpected": 1}], tmp_path / "results.csv")
    assert (tmp_path / "results.csv").read_text() == before


def test_audit_cache_follows_model_bytes_and_settings(tmp_path, monkeypatch):
    from qpae.bench import run as bench_run

    original, unlearned = tmp_path / "original.pt", tmp_path / "qpae.pt"
    original.write_bytes(b"original weights")
    unlearned.write_bytes(b"unlearned weights")
    runner = bench_run.BenchRunner({"datasets": {}}, tmp_path / "results", [])
    monkeypatch.setattr(runner, "pretrained", lambda dataset, seed: original)
    monkeypatch.setattr(runner, "datamodule", lambda dataset: None)
    monkeypatch.setattr(bench_run, "load_net", lambda path: path)
    monkeypatch.setattr(bench_run, "random_init_like", lambda path, seed: None)
    monkeypatch.setattr(bench_run.plots, "audit_figures", lambda raws, folder, k: {})
    audited = []

    def fake_audit(nets, dm, forget, settings):
        audited.append(settings)
        return {name: {"FA": 0.0} for name in nets}, {}

    monkeypatch.setattr(bench_run, "run_audit", fake_audit)
    key, models = ("single", "d", 0, (1,)), {"qpae": unlearned}
    runner.audit(key, models, {"relearn_steps": 5})
    runner.audit(key, models, {"relearn_steps": 5})
    assert len(audited) == 1  # read back
    unlearned.write_bytes(b"other weights, same path")
    runner.audit(key, models, {"relearn_steps": 5})
    assert len(audited) == 2  # new bytes at the same path: audited again
    original.write_bytes(b"a retrained original")
    runner.audit(key, models, {"relearn_steps": 5})
    assert len(audited) == 3  # the original is one of the audited files
    runner.audit(key, models, {"relearn_steps": 6})
    assert len(audited) == 4 and audited[-1].relearn_steps == 6
    runner.audit(key, models, {"relearn_steps": 5})
    assert len(audited) == 4  # back to settings and bytes audited before: read back


def test_a_profile_without_cells_writes_a_header_only_csv(tmp_path):
    report.write_csv([], tmp_path / "results.csv")
    assert (tmp_path / "results.csv").read_text().splitlines() == [",".join(report.FIELDS)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"datasets": ["nope"]}, "unknown: \\['nope'\\]"),
        ({"methods": []}, "needs datasets"),
        ({"n": 3}, "at least"),
        ({"n": "16"}, "whole number"),
        ({"noise_floor_n": 4}, "noise_floor_n"),
        ({"noise_floor_n": True}, "noise_floor_n"),
        ({"noise_floor_datasets": ["other"]}, "noise_floor_datasets"),
    ],
)
def test_a_bad_certify_section_fails_before_any_cell(change, message):
    from qpae.bench.certify import check_spec

    good = {"datasets": ["d"], "methods": ["qpae"], "n": 6, "noise_floor_n": 8}
    check_spec(good, {"d": {}})
    with pytest.raises(ValueError, match=message):
        check_spec({**good, **change}, {"d": {}})
