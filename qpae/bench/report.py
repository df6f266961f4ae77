"""Bench results → CSV, markdown tables in the paper's column order, PNG plots, W&B."""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from pathlib import Path

from qpae.checkpoints import write_atomic
from qpae.figures import fitted_limits, plt, save, series_style
from qpae.metrics.unlearning import METRIC_ORDER

FIELDS = ("scenario", "dataset", "method", "variant", "seed", "request")

# The report's sections, and the frontier's panels, come in this order: one class, several at
# once, a tenth of the classes, a sequence of requests, an accent, then the ablation; a scenario
# not listed here comes after them, by name. The privacy audit follows, in the same order.
SCENARIO_ORDER = ("single", "multi", "ten_percent", "sequential", "accent", "ablation")


def scenario_rank(scenario: str) -> tuple[int, str]:
    """Sort key of a scenario in the report (:data:`SCENARIO_ORDER`, then by name)."""
    if scenario in SCENARIO_ORDER:
        return SCENARIO_ORDER.index(scenario), ""
    return len(SCENARIO_ORDER), scenario


def in_report_order(keys) -> list:
    """Keys whose first item is a scenario, by :func:`scenario_rank`; within a scenario in the
    order they first appear (the plan's: the profile's datasets and forget sets)."""
    first: dict = {}
    for key in keys:
        first.setdefault(key, len(first))
    return sorted(first, key=lambda k: (scenario_rank(k[0]), first[k]))


def flatten(results: list[dict]) -> list[dict]:
    """One row per (cell, request): before/after metrics, wall times."""
    rows = []
    for res in results:
        for k, rep in enumerate(res["reports"], start=1):
            row = {
                **{f: res["cell"][f] for f in FIELDS[:-1]},
                "request": k,
                "forget": " → ".join(",".join(map(str, r)) for r in res["cell"]["requests"]),
                "last": k == len(res["reports"]),
                "wall_s": res["wall_s"],
                "pretrain_s": res["pretrain_s"],
                "train_s": rep["timings_s"]["train_s"],
                # the unlearning fit: phases, training and the automatic schedule's checks
                "fit_s": rep["timings_s"].get("fit_total_s", math.nan),
            }
            for m in METRIC_ORDER:
                # the model before the cell's first request (for a sequence, the original)
                row[f"before_{m}"] = res["reports"][0]["before"].get(m, math.nan)
                row[f"{m}"] = rep["after"].get(m, math.nan)
            per_class = [v for key, v in rep["after"].items() if key.startswith("FA_class")]
            row["FA_max"] = max(per_class, default=math.nan)  # every class forgotten so far
            rows.append(row)
    return rows


def write_text(path: Path, text: str) -> None:
    """Write ``text`` through a temp file in the same folder and one rename (the temp file is
    removed if anything fails): a reader, or an interrupted run, never sees half a report."""
    write_atomic(path, text.encode())


def write_csv(rows: list[dict], path: Path) -> None:
    """Every row as CSV (a column per key of the first row), written atomically; a profile
    without cells (only a certification) gets the header of the cell fields."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else list(FIELDS))
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def _stats(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _cell(values: list[float]) -> str:
    mean, sd = _stats(values)
    return "—" if math.isnan(mean) else f"{mean:.1f} ± {sd:.1f}"


def groups(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Final-request rows grouped by (scenario, dataset, forget, method, variant)."""
    out: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r["last"]:
            out[(r["scenario"], r["dataset"], r["forget"], r["method"], r["variant"])].append(r)
    return out


def _name(method: str, variant: str) -> str:
    return method if variant in ("default", "full") else f"{method} ({variant})"


def _method_order(name: str) -> tuple[bool, str]:
    return name != "retrain", name  # retrain (the gold standard) first, then by name


def retrain_reference(rows: list[dict]) -> dict[tuple, tuple[float, float]]:
    """Mean (RA, FA) of retrain for each (dataset, forget set), whatever the scenario."""
    ref: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r["last"] and r["method"] == "retrain":
            ref[(r["dataset"], r["forget"])].append(r)
    return {k: (_stats([r["RA"] for r in v])[0], _stats([r["FA"] for r in v])[0]) for k, v in ref.items()}


def retrain_fit_seconds(rows: list[dict]) -> dict[tuple, float]:
    """Retrain's fit time for each (dataset, forget set, seed): what a method's fit time is a
    share of (the same seed's retrain, so that machine load and data order pair up)."""
    return {
        (r["dataset"], r["forget"], r["seed"]): r["fit_s"]
        for r in rows
        if r["last"] and r["method"] == "retrain"
    }


# Columns whose definition is not the paper's (arXiv 2507.22208 and its public code).
DEVIATIONS = (
    "Columns that differ from the paper's tables: **FRR** is the share of forget-class clips not "
    "recognised (100 − FA); the paper's main public script computes 1 − RA, which repeats RA. **PER** "
    "is not clipped, so it is negative when FA rises; the public code clips it to [0, 100]. **ERB** is "
    "qpae's erasure–retention balance 2(100 − FA)·RA/((100 − FA) + RA); the paper's ERB values "
    "fit 2·FA·RA/(FA + RA), which rises with FA and is shown as **ERB_paper** for comparison only."
)


def markdown(rows: list[dict], schedule: str) -> str:
    """The report's header (title, ``schedule``, how to read it) and one table per scenario,
    dataset and forget set, in :func:`in_report_order`."""
    ref = retrain_reference(rows)
    by_table: dict[tuple, list] = defaultdict(list)
    for (scenario, dataset, forget, method, variant), sel in groups(rows).items():
        by_table[(scenario, dataset, forget)].append((method, variant, sel))
    lines = [
        "# Benchmark report",
        "",
        schedule,
        "",
        "Metrics on the test split after unlearning, mean ± std over seeds (percent). "
        "ΔRA/ΔFA: difference to `retrain` on the same dataset and forget set "
        "(0 is best: retrain is the gold standard).",
        "",
        DEVIATIONS,
        "",
    ]
    fit_ref = retrain_fit_seconds(rows)
    head = [
        "method",
        *METRIC_ORDER,
        "wall s",
        "% of pretraining",
        "fit % of retrain",
        "ΔRA vs retrain",
        "ΔFA vs retrain",
    ]
    for scenario, dataset, forget in in_report_order(by_table):
        entries = by_table[(scenario, dataset, forget)]
        seeds = len(entries[0][2])
        lines += [f"## {scenario} — {dataset}, forget {forget} ({seeds} seeds)", ""]
        if (dataset, forget) not in ref:
            lines += ["No `retrain` ran on this dataset and forget set: the Δ columns show —.", ""]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        original = entries[0][2]
        lines.append(
            "| original | "
            + " | ".join(_cell([r[f"before_{m}"] for r in original]) for m in METRIC_ORDER)
            + " | | | | | |"
        )
        order = lambda e: (e[0] != "retrain", e[0], e[1] not in ("default", "full"), e[1])  # noqa: E731
        for method, variant, sel in sorted(entries, key=order):
            name = _name(method, variant)
            ra_ref, fa_ref = ref.get((dataset, forget), (math.nan, math.nan))
            ra, fa = _stats([r["RA"] for r in sel])[0], _stats([r["FA"] for r in sel])[0]
            gap = [f"{ra - ra_ref:+.1f}", f"{fa - fa_ref:+.1f}"] if not math.isnan(ra_ref) else ["—", "—"]
            cells = [_cell([r[m] for r in sel]) for m in METRIC_ORDER]
            share = _cell([100 * r["wall_s"] / r["pretrain_s"] for r in sel])
            # every request's fit of a sequence, against one retrain without all of them
            of_retrain = [
                100 * sum(q["fit_s"] for q in rows if _same_cell(q, r)) / fit_ref[key]
                for r in sel
                if (key := (r["dataset"], r["forget"], r["seed"])) in fit_ref
            ]
            lines.append(
                f"| {name} | " + " | ".join(cells) + f" | {_cell([r['wall_s'] for r in sel])} | "
                f"{share} | {_cell(of_retrain) if of_retrain else '—'} | " + " | ".join(gap) + " |"
            )
        lines.append("")
    return "\n".join(lines)


def _same_cell(a: dict, b: dict) -> bool:
    return all(a[f] == b[f] for f in ("scenario", "dataset", "method", "variant", "seed", "forget"))


def plot_frontier(rows: list[dict], path: Path) -> Path | None:
    """FA vs RA after unlearning, the privacy–utility frontier: one panel per scenario in the
    report's order (the ablation's sweeps have a figure of their own), each method with a marker
    shape and colour of its own (the same in every panel), the original model as a black cross.

    No point hides another: markers are hollow, each method is drawn smaller than the one before
    it, so points that coincide nest inside each other like rings, and legends sit beside the
    panels; where a panel holds several datasets or forget sets, each point carries an offset
    label naming them. Each panel's limits fit its points with a margin
    (:func:`~qpae.figures.fitted_limits`), not always 0–100. Returns None when no scenario but
    the ablation ran."""
    panels: dict[str, dict[str, list]] = {}  # scenario → method name → [(FA, RA, where)]
    originals: dict[str, dict[str, tuple]] = {}  # scenario → where → (FA, RA) before unlearning
    for (scenario, dataset, forget, method, variant), sel in groups(rows).items():
        if scenario == "ablation":
            continue
        where = f"{dataset}, forget {forget}"
        fa, ra = _stats([r["FA"] for r in sel])[0], _stats([r["RA"] for r in sel])[0]
        panels.setdefault(scenario, {}).setdefault(_name(method, variant), []).append((fa, ra, where))
        before = (_stats([r["before_FA"] for r in sel])[0], _stats([r["before_RA"] for r in sel])[0])
        originals.setdefault(scenario, {})[where] = before
    if not panels:
        return None
    names = sorted({n for methods in panels.values() for n in methods}, key=_method_order)
    scenarios = sorted(panels, key=scenario_rank)
    n_cols = min(len(scenarios), 2)
    n_rows = math.ceil(len(scenarios) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(6.4 * n_cols, 3.9 * n_rows), squeeze=False)
    for ax in axes.flat[len(scenarios) :]:
        fig.delaxes(ax)
    for ax, scenario in zip(axes.flat, scenarios, strict=False):
        places = originals[scenario]
        fa_all = [fa for fa, _ in places.values()]
        ra_all = [ra for _, ra in places.values()]
        ax.scatter(fa_all, ra_all, marker="x", color="black", s=45, label="original (before)", zorder=1)
        labelled: dict[tuple, None] = {}  # (FA, RA, where) in drawing order, each once
        for i, name in enumerate(names):
            points = [p for p in panels[scenario].get(name, []) if not math.isnan(p[0] + p[1])]
            if not points:
                continue
            style = series_style(i, len(names))
            fa, ra, _ = zip(*points, strict=True)
            ax.scatter(
                fa,
                ra,
                marker=style["marker"],
                s=style["markersize"] ** 2,
                facecolors="none",
                edgecolors=style["color"],
                linewidths=1.5,
                label=name,
                zorder=2 + i,
            )
            fa_all += fa
            ra_all += ra
            if len(places) > 1:  # which dataset / forget set a point belongs to, once per place
                labelled.update(dict.fromkeys(points))
        for x, y, text in labelled:
            ax.annotate(text, (x, y), xytext=(5, 4), textcoords="offset points", fontsize=6)
        ax.set_xlim(fitted_limits(fa_all))
        ax.set_ylim(fitted_limits(ra_all))
        ax.set_xlabel("forget accuracy FA (%) — lower forgets more")
        ax.set_ylabel("retain accuracy RA (%)")
        ax.set_title(f"{scenario}: {', '.join(places)}" if len(places) == 1 else scenario, fontsize=9)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside: hides no point
    fig.suptitle("Privacy–utility frontier after unlearning (mean over seeds)", fontsize=10)
    return save(fig, path)


# the ablation's sweeps: variant name prefix, symbol, and QPAudioEraser's default (the "full" variant)
SWEEPS = (("lambda", "λ", 1.0), ("alpha", "α", 0.5))


def sweep_points(rows: list[dict], param: str, default: float) -> list[tuple[float, float, float]]:
    """``(value, RA, FA)`` for every value of ``param`` that the ablation ran (variants named
    ``{param}{value}``, and ``full`` at ``default``), sorted by value, means over seeds and
    forget sets; a variant that did not run is simply absent."""
    by_value: dict[float, list[dict]] = defaultdict(list)
    for r in rows:
        if r["scenario"] != "ablation" or not r["last"]:
            continue
        variant = r["variant"]
        if variant == "full":
            by_value[default].append(r)
        elif variant.startswith(param):
            try:
                by_value[float(variant.removeprefix(param))].append(r)
            except ValueError:
                continue
    return [
        (value, _stats([r["RA"] for r in sel])[0], _stats([r["FA"] for r in sel])[0])
        for value, sel in sorted(by_value.items())
    ]


def plot_sweeps(rows: list[dict], path: Path) -> Path | None:
    """RA and FA over the λ and α sweeps of the ablation scenario, one panel each: the values
    that ran, connected (a missing variant leaves a longer segment, not a gap)."""
    if not any(r["scenario"] == "ablation" and r["last"] for r in rows):
        return None
    fig, axes = plt.subplots(1, len(SWEEPS), figsize=(4.6 * len(SWEEPS), 3.8), squeeze=False)
    for ax, (param, symbol, default) in zip(axes[0], SWEEPS, strict=True):
        points = sweep_points(rows, param, default)
        shown = []
        for i, (label, column) in enumerate((("RA", 1), ("FA", 2))):
            xy = [(p[0], p[column]) for p in points if not math.isnan(p[column])]
            if not xy:
                continue
            style = series_style(i, 2)
            ax.plot(*zip(*xy, strict=True), label=label, **style)
            shown += [y for _, y in xy]
        if shown:
            ax.set_xticks([p[0] for p in points])
            ax.set_ylim(fitted_limits(shown))
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no {symbol} variant ran", transform=ax.transAxes, ha="center")
        ax.set_xlabel(f"{symbol} ({param}; {default:g} is the default)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"QPAudioEraser {symbol} sweep")
    return save(fig, path)


def plot_sequential(rows: list[dict], path: Path) -> Path | None:
    """Three panels against the request number of the sequential scenario, per method (and
    dataset, when there are several): RA (with the original's RA dotted), FAR, and the highest FA
    of any class forgotten so far (an earlier class coming back shows there)."""
    seq = [r for r in rows if r["scenario"] == "sequential"]
    if not seq:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    datasets = list(dict.fromkeys(r["dataset"] for r in seq))
    series = sorted(
        {(r["dataset"], r["method"]) for r in seq}, key=lambda s: (datasets.index(s[0]), *_method_order(s[1]))
    )
    for dataset in datasets:
        before = _stats([r["before_RA"] for r in seq if r["dataset"] == dataset])[0]
        label = "original (before any request)" if len(datasets) == 1 else f"original ({dataset})"
        axes[0].axhline(before, color="gray", linestyle=":", linewidth=1, label=label)
    panels = (
        ("RA", "retain accuracy RA (%)"),
        ("FAR", "retained clips taken for a forgotten class, FAR (%)"),
        ("FA_max", "highest FA of any forgotten class (%)"),
    )
    for i, (dataset, method) in enumerate(series):
        sel = [r for r in seq if r["dataset"] == dataset and r["method"] == method]
        ks = sorted({r["request"] for r in sel})
        label = method if len(datasets) == 1 else f"{method} ({dataset})"
        for ax, (key, _) in zip(axes, panels, strict=True):
            values = [_stats([r.get(key, math.nan) for r in sel if r["request"] == k])[0] for k in ks]
            ax.plot(ks, values, label=label, **series_style(i, len(series)))
    last = max(r["request"] for r in seq)
    for ax, (_, ylabel) in zip(axes, panels, strict=True):
        ax.set_xticks(range(1, last + 1))
        ax.set_xlabel("request (classes forgotten one after another)")
        ax.set_ylabel(ylabel)
    axes[0].set_title("Sequential deletion requests")
    axes[0].legend(fontsize=8)
    return save(fig, path)


AUDIT_COLUMNS = (
    ("FA", "FA"),
    ("RA", "RA"),
    ("mia_loss_auc", "MIA AUC (loss, F-train vs F-test)"),
    ("mia_attack_auc", "MIA AUC (attack)"),
    ("mia_member_rate_forget_train", "member rate F-train"),
    ("mia_member_rate_forget_test", "member rate F-test"),
    ("relearn50_whole", "relearn steps to 50% (whole)"),
    ("relearn50_head", "relearn steps to 50% (head)"),
    ("relearn_orig_whole", "relearn steps to original FA (whole)"),
    ("margin", "logit margin"),
    ("js_forget_test", "JS to retrain (F-test)"),
    ("js_retain_test", "JS to retrain (R-test)"),
    ("agreement_forget_test", "label agreement with retrain (F-test)"),
    ("probe_acc", "few-shot probe acc"),
    ("probe_p_forget", "probe p(F)"),
    ("centroid_acc", "centroid probe acc"),
)


def audit_markdown(audits: list[dict], relearn_steps: int) -> str:
    """Per scenario, dataset and forget set (in :func:`in_report_order`): every audit measure
    per model, mean ± std over seeds."""
    lines = [
        "",
        "# Privacy audit",
        "",
        "Each model beside `retrain` (the target) and a randomly initialised network (the floor). "
        f"Relearn steps: {relearn_steps + 1} means not relearned within {relearn_steps} steps. "
        "Probe: linear probe / cosine nearest centroid on frozen penultimate features, trained on "
        "all retained training clips plus 3 clips of the forgotten speaker, tested on their "
        "held-out clips.",
        "",
    ]
    by_group: dict[tuple, list[dict]] = defaultdict(list)
    for a in audits:
        by_group[(a["scenario"], a["dataset"], tuple(a["forget"]))].append(a)
    for scenario, dataset, forget in in_report_order(by_group):
        entries = by_group[(scenario, dataset, forget)]
        models = list(entries[0]["results"])
        order = [
            "original",
            "retrain",
            *[m for m in models if m not in ("original", "retrain", "random_init")],
            "random_init",
        ]
        lines += [
            f"## {scenario} — {dataset}, forget {list(forget)} ({len(entries)} seeds)",
            "",
            "| model | " + " | ".join(title for _, title in AUDIT_COLUMNS) + " |",
            "|" + "---|" * (len(AUDIT_COLUMNS) + 1),
        ]
        for m in [m for m in order if m in models]:
            cells = []
            for key, _ in AUDIT_COLUMNS:
                mean, sd = _stats([e["results"][m].get(key, math.nan) for e in entries])
                cells.append("—" if math.isnan(mean) else (f"{mean:.3g} ± {sd:.2g}"))
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines += ["", *gap_table(entries, [m for m in order if m in models and m != "retrain"]), ""]
    return "\n".join(lines)


# measures whose value should match retrain's; JS and agreement are distances to retrain already
GAP_COLUMNS = (
    "mia_loss_auc",
    "mia_attack_auc",
    "relearn50_whole",
    "margin",
    "probe_acc",
    "probe_p_forget",
    "centroid_acc",
)


def gap_table(entries: list[dict], models: list[str]) -> list[str]:
    """|model − retrain| per measure, averaged over seeds; the smallest gap per column in bold.

    Seeds without a retrain run give no gap; with none at all every cell shows "—" and a line
    says that no retrain ran."""
    titles = dict(AUDIT_COLUMNS)
    with_retrain = [e for e in entries if "retrain" in e["results"]]

    def gap(model: str, key: str) -> float:
        nan = math.nan
        return _stats(
            [
                abs(e["results"].get(model, {}).get(key, nan) - e["results"]["retrain"].get(key, nan))
                for e in with_retrain
            ]
        )[0]

    gaps = {m: {k: gap(m, k) for k in GAP_COLUMNS} for m in models}
    unlearned = [m for m in models if m not in ("original", "random_init")]
    best = {}
    for k in GAP_COLUMNS:
        finite = [m for m in unlearned if not math.isnan(gaps[m][k])]
        if finite:
            best[k] = min(finite, key=lambda m: gaps[m][k])
    intro = (
        "Gap to retrain, |model − retrain| averaged over seeds (smaller is closer; the closest "
        "unlearning method in bold):"
    )
    if not with_retrain:
        intro = "Gap to retrain: no retrain ran for this group, so there is no gap to show (—)."
    lines = [
        intro,
        "",
        "| model | " + " | ".join(titles[k] for k in GAP_COLUMNS) + " |",
        "|" + "---|" * (len(GAP_COLUMNS) + 1),
    ]
    for m in models:
        cells = []
        for k in GAP_COLUMNS:
            value = gaps[m][k]
            text = "—" if math.isnan(value) else f"{value:.3g}"
            cells.append(f"**{text}**" if best.get(k) == m else text)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def certify_markdown(entries: list[dict]) -> str:
    """Per dataset, every method's certificate (per-clip ε over the forget clips, N runs against
    N retrained models) beside the retrain ensemble's null test and the power test."""
    if not entries:
        return ""
    lines = [
        "",
        "# Certification (per-clip ε, NeurIPS 2023 unlearning challenge)",
        "",
        "ε: the challenge's estimate (median / 95th percentile over forget clips; capped clips "
        "are at the most N models can show). CP ε: each rule bounded by 95% Clopper–Pearson "
        "intervals, the best rule. Null: retrain half vs half (the instrument's floor); power: "
        "finetune vs retrain. "
        "Score: the challenge's (bucketed ε × RA and test-accuracy ratios to retrain).",
        "",
    ]
    by_dataset: dict[str, list[dict]] = defaultdict(list)
    for e in entries:
        by_dataset[e["dataset"]].append(e)
    head = [
        "method",
        "ε median",
        "ε p95",
        "CP ε median",
        "CP ε p95",
        "score",
        "RA (retrain)",
        "null ε / CP ε",
        "power CP ε",
        "valid",
        "wall s (its runs)",
    ]
    for dataset, rows in by_dataset.items():
        first = rows[0]
        lines += [
            f"## {dataset}, forget {first['forget_class_names']} (N = {first['n']})",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        for e in rows:
            f, null, power = e["epsilon"]["forget"], e["epsilon"]["null"], e["epsilon"]["power"]
            lines.append(
                f"| {e['method']} | {f['median']:.2f} | {f['p95']:.2f} | {f['lower_median']:.2f} | "
                f"{f['lower_p95']:.2f} | {e['score']:.3f} | {e['RA']['unlearned']:.1f} ({e['RA']['retrain']:.1f}) | "
                f"{null['median']:.2f} / {null['lower_median']:.2f} | {power['lower_median']:.2f} | "
                f"{'yes' if e['valid'] else 'no'} | {e['wall_s']:.0f} "
                f"({e['ensembles']['unlearned']['build_wall_s']:.0f}) |"
            )
        retrain = first["ensembles"]["retrain"]["member_fit_s"]
        lines += [
            "",
            f"Retrain ensemble: {len(retrain)} members, fit {statistics.median(retrain):.0f} s median each, "
            f"{sum(retrain):.0f} s in all. Wall s: the whole certification (its runs: building the method's "
            "own N runs); after the first method, the retrain and power ensembles are read from the cache.",
            "",
        ]
    return "\n".join(lines)


def noise_floor_markdown(floors: list[dict]) -> str:
    """Per dataset, the null test (retrain half vs half) on the first N members for growing N."""
    if not floors:
        return ""
    lines = [
        "",
        "# Noise floor by N (retrain ensemble: first N/2 members vs the next N/2)",
        "",
        "What two samples of the same distribution show: the floor under which no method's ε means "
        "anything, and the most a Clopper–Pearson ε can show at that N.",
        "",
    ]
    head = [
        "N (N/2 vs N/2)",
        "ε median",
        "ε p95",
        "CP ε median",
        "CP ε p95",
        "CP ε max",
        "most CP ε can show",
    ]
    for floor in floors:
        fits = floor["member_fit_s"]
        lines += [
            f"## {floor['dataset']}, forget {floor['forget_class_names']}",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        for n, s in sorted(floor["by_n"].items(), key=lambda kv: int(kv[0])):
            lines.append(
                f"| {n} | {s['median']:.2f} | {s['p95']:.2f} | {s['lower_median']:.2f} | {s['lower_p95']:.2f} | "
                f"{s['lower_max']:.2f} | {s['lower_ceiling']:.2f} |"
            )
        lines += [
            "",
            f"{len(fits)} retrain members, fit {statistics.median(fits):.0f} s median each ({min(fits):.0f}–{max(fits):.0f}); "
            f"{floor['build_wall_s']:.0f} s to build the members the certificates had not.",
            "",
        ]
    return "\n".join(lines)
