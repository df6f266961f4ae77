"""The bench report's figures, read from their matplotlib objects (never their pixels), and
report.md's order of sections and its wall time."""

import re
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from omegaconf import OmegaConf

from qpae.bench import report
from qpae.metrics.unlearning import METRIC_ORDER


@pytest.fixture
def figures(monkeypatch):
    """The Figure each plotting call would have saved, in call order (nothing is written)."""
    captured = []
    monkeypatch.setattr(report, "save", lambda fig, path: captured.append(fig) or path)
    return captured


def result(scenario, method, after, variant="default", requests=((0,),), dataset="d", before=(90.0, 85.0)):
    """One cell's result as the runner writes it; ``after`` is one (FA, RA) per request."""

    def metrics(fa, ra):
        return {**dict.fromkeys(METRIC_ORDER, 50.0), "FA": fa, "RA": ra}

    return {
        "cell": {
            "scenario": scenario,
            "dataset": dataset,
            "method": method,
            "variant": variant,
            "seed": 0,
            "requests": [list(r) for r in requests],
        },
        "reports": [
            {"before": metrics(*before), "after": metrics(fa, ra), "timings_s": {"train_s": 1.0}}
            for fa, ra in after
        ],
        "wall_s": 2.0,
        "pretrain_s": 10.0,
        "model": f"/models/{scenario}-{method}-{variant}.pt",
    }


# scenarios deliberately out of order: the report and the frontier must not follow this one
RESULTS = [
    result("ablation", "qpae", [(0.0, 80.0)], variant="full"),
    result("ablation", "qpae", [(5.0, 78.0)], variant="lambda0.5"),
    result("ablation", "qpae", [(2.0, 79.0)], variant="alpha0.2"),
    result("sequential", "qpae", [(0.0, 84.0), (0.0, 83.0), (0.0, 81.0)], requests=((0,), (1,), (2,))),
    result("sequential", "retrain", [(0.0, 86.0), (0.0, 85.0), (0.0, 84.0)], requests=((0,), (1,), (2,))),
    result("single", "qpae", [(0.0, 88.0)]),
    result("single", "retrain", [(0.0, 88.0)]),  # the same point as qpae: both must show
    result("single", "finetune", [(40.0, 86.0)]),
    result("multi", "qpae", [(10.0, 82.0)], requests=((0, 2),)),
    result("multi", "retrain", [(0.0, 83.0)], requests=((0, 2),)),
    result("custom", "qpae", [(0.0, 70.0)]),
]


def rows():
    return report.flatten(RESULTS)


def test_frontier_has_one_panel_per_scenario_in_the_reports_order(tmp_path, figures):
    report.plot_frontier(rows(), tmp_path / "f.png")
    [fig] = figures
    titles = [ax.get_title().split(":")[0] for ax in fig.axes]
    assert titles == ["single", "multi", "sequential", "custom"]  # the sweeps have their own figure
    for ax in fig.axes:
        assert ax.get_xlabel().startswith("forget accuracy FA") and ax.get_ylabel().startswith("retain")
        assert ax.get_legend() is not None


def test_frontier_limits_fit_the_points_with_a_margin(tmp_path, figures):
    report.plot_frontier(rows(), tmp_path / "f.png")
    [fig] = figures
    for ax in fig.axes:
        points = np.concatenate([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        assert x0 < points[:, 0].min() and points[:, 0].max() < x1
        assert y0 < points[:, 1].min() and points[:, 1].max() < y1
        # a margin of at least 3 points on each side, and no wider than the data needs
        assert points[:, 0].min() - x0 >= 3 - 1e-9 and x1 - points[:, 0].max() >= 3 - 1e-9
        assert y1 - y0 < 30  # RA between 70 and 90 here: not 0–100


def test_frontier_points_that_coincide_stay_visible(tmp_path, figures):
    report.plot_frontier(rows(), tmp_path / "f.png")
    single = figures[0].axes[0]
    by_label = {c.get_label(): c for c in single.collections if isinstance(c, PathCollection)}
    assert {"retrain", "qpae", "finetune", "original (before)"} <= set(by_label)
    retrain, qpae = by_label["retrain"], by_label["qpae"]
    assert retrain.get_offsets().tolist() == qpae.get_offsets().tolist()  # the same point ...
    assert retrain.get_sizes()[0] > qpae.get_sizes()[0]  # ... drawn as nested rings
    assert retrain.get_zorder() < qpae.get_zorder()
    for c in (retrain, qpae):
        assert c.get_facecolor().size == 0 or np.all(c.get_facecolor()[:, 3] == 0)  # hollow
    assert len({c.get_paths()[0].vertices.tobytes() for c in (retrain, qpae)}) == 2  # other shapes


def test_frontier_labels_each_point_when_a_panel_holds_several_datasets(tmp_path, figures):
    two = [*RESULTS, result("single", "qpae", [(0.0, 75.0)], dataset="e")]
    report.plot_frontier(report.flatten(two), tmp_path / "f.png")
    single = figures[0].axes[0]
    assert {t.get_text() for t in single.texts} >= {"d, forget 0", "e, forget 0"}


def test_frontier_without_scenarios_beside_the_ablation_is_not_drawn(tmp_path, figures):
    assert report.plot_frontier(report.flatten(RESULTS[:3]), tmp_path / "f.png") is None
    assert not figures


def test_sequential_has_integer_request_ticks(tmp_path, figures):
    report.plot_sequential(rows(), tmp_path / "s.png")
    [fig] = figures
    ax, far, fa = fig.axes  # RA, FAR, and the highest FA of any class forgotten so far
    assert far.get_ylabel().startswith("retained clips taken") and fa.get_ylabel().startswith("highest FA")
    assert [len(a.get_lines()) for a in (far, fa)] == [2, 2]  # qpae and retrain
    assert list(ax.get_xticks()) == [1, 2, 3]
    assert ax.get_xlabel().startswith("request") and ax.get_ylabel().startswith("retain accuracy")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["qpae"].get_xdata()) == [1, 2, 3] and list(lines["qpae"].get_ydata()) == [84, 83, 81]
    assert lines["qpae"].get_linestyle() != lines["retrain"].get_linestyle()
    assert "original (before any request)" in lines
    assert ax.get_legend() is not None


def test_sweeps_draw_lines_on_both_panels_from_the_variants_that_ran(tmp_path, figures):
    report.plot_sweeps(rows(), tmp_path / "w.png")
    [fig] = figures
    assert len(fig.axes) == 2
    expected = {"λ": [0.5, 1.0], "α": [0.2, 0.5]}  # lambda1.5, 2.0 and alpha0.35 did not run
    for ax in fig.axes:
        [symbol] = [s for s in expected if s in ax.get_title()]
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert set(lines) == {"RA", "FA"}
        for line in lines.values():
            assert list(line.get_xdata()) == expected[symbol]  # present values, connected
            assert line.get_linestyle() not in ("None", "", " ")
            assert not np.isnan(np.asarray(line.get_ydata(), dtype=float)).any()
        assert list(ax.get_xticks()) == expected[symbol]
        assert ax.get_ylabel() and ax.get_legend() is not None


def test_a_sweep_with_no_variant_says_so_and_the_other_is_still_drawn(tmp_path, figures):
    only_lambda = [r for r in RESULTS if r["cell"]["variant"] != "alpha0.2"]
    only_lambda = [r for r in only_lambda if r["cell"]["variant"] != "full"]
    report.plot_sweeps(report.flatten(only_lambda), tmp_path / "w.png")
    [fig] = figures
    lam, alpha = fig.axes
    assert [line.get_label() for line in lam.get_lines()] == ["RA", "FA"]
    assert not alpha.get_lines() and "no α variant ran" in [t.get_text() for t in alpha.texts]


def audits():
    entry = {"results": {m: {"FA": 0.0} for m in ("original", "retrain", "qpae", "random_init")}}
    return [
        {"scenario": s, "dataset": "d", "seed": 0, "forget": f, **entry}
        for s, f in (("multi", [0, 2]), ("custom", [0]), ("single", [0]))
    ]


def headings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#")]


DOCUMENTED_ORDER = [
    "# Benchmark report",
    "## single — d, forget 0 (1 seeds)",
    "## multi — d, forget 0,2 (1 seeds)",
    "## sequential — d, forget 0 → 1 → 2 (1 seeds)",
    "## ablation — d, forget 0 (1 seeds)",
    "## custom — d, forget 0 (1 seeds)",  # not in SCENARIO_ORDER: after the known ones
    "# Privacy audit",
    "## single — d, forget [0] (1 seeds)",
    "## multi — d, forget [0, 2] (1 seeds)",
    "## custom — d, forget [0] (1 seeds)",
]


def test_report_sections_come_in_the_documented_order():
    assert report.SCENARIO_ORDER == ("single", "multi", "ten_percent", "sequential", "accent", "ablation")
    text = report.markdown(rows(), "schedule") + report.audit_markdown(audits(), relearn_steps=10)
    assert headings(text) == DOCUMENTED_ORDER
    # whatever order the cells ran in
    shuffled = report.flatten(RESULTS[::-1])
    assert headings(report.markdown(shuffled, "s") + report.audit_markdown(audits()[::-1], 10)) == (
        DOCUMENTED_ORDER
    )


def test_report_md_states_the_whole_invocations_wall_time_audit_included(tmp_path, monkeypatch, figures):
    """qpae-bench with a fake runner and clock: each audit takes 1000 s, and report.md says so."""
    from qpae.bench import profile as cli_bench

    clock = SimpleNamespace(now=0.0)
    by_name = {
        (r["cell"]["scenario"], r["cell"]["method"], r["cell"]["variant"], r["cell"]["dataset"]): r
        for r in RESULTS
    }

    class FakeRunner:
        def __init__(self, spec, results_dir, base, run_overrides):
            pass

        def class_names(self):
            return {"d": ["a", "b", "c", "e"]}

        def run(self, cell):
            clock.now += 10.0
            return by_name[(cell.scenario, cell.method, cell.variant, cell.dataset)]

        def audit(self, key, models, settings):
            clock.now += 1000.0
            scenario, dataset, seed, forget = key
            found = [a for a in audits() if a["scenario"] == scenario][0]
            return {**found, "figures": str(tmp_path / "no-figures")}

    monkeypatch.setattr(cli_bench, "BenchRunner", FakeRunner)
    monkeypatch.setattr(cli_bench, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    scenarios = {  # the profile lists them out of order too
        "ablation": {
            "datasets": ["d"],
            "forget_index": [[0]],
            "variants": {"full": [], "lambda0.5": ["unlearn.lambda_=0.5"], "alpha0.2": ["unlearn.alpha=0.2"]},
        },
        "sequential": {"datasets": ["d"], "sequential": 3, "methods": ["qpae", "retrain"]},
        "custom": {"datasets": ["d"], "forget_index": [[0]]},
        "multi": {"datasets": ["d"], "forget_index": [[0, 2]], "methods": ["qpae", "retrain"]},
        "single": {"datasets": ["d"], "forget_index": [[0]], "methods": ["qpae", "retrain", "finetune"]},
    }
    cfg = OmegaConf.create(
        {
            "bench": {
                "seeds": [0],
                "methods": ["qpae"],
                "datasets": {"d": {"overrides": [], "model": "m", "pretrain_epochs": 1}},
                "scenarios": scenarios,
                "audit": {"scenarios": ["custom", "multi", "single"], "settings": {"relearn_steps": 10}},
            },
            "results_dir": str(tmp_path / "results"),
            "bench_name": "fake",
            "run_overrides": [],
            "wandb": False,
            "paths": {"root": str(tmp_path)},
        }
    )
    out = cli_bench.bench(cfg)
    text = (out / "report.md").read_text()
    assert headings(text) == DOCUMENTED_ORDER
    cells = len(RESULTS)
    stated = re.search(r"This invocation: (\d+) s wall time in all", text)
    assert stated, text.splitlines()[2]
    assert int(stated.group(1)) == 3 * 1000 + 10 * cells  # the three audits are counted
    assert len(figures) == 3  # frontier, sweeps and sequential, drawn before the time is taken
