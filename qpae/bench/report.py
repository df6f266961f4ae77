"""Bench results → CSV, markdown tables in the paper's column order, PNG plots, W&B."""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from pathlib import Path

from qpae.checkpoints import write_atomic
from qpae.figures import plt, save
from qpae.metrics.unlearning import METRIC_ORDER

FIELDS = ("scenario", "dataset", "method", "variant", "seed", "request")


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
            }
            for m in METRIC_ORDER:
                # the model before the cell's first request (for a sequence, the original)
                row[f"before_{m}"] = res["reports"][0]["before"].get(m, math.nan)
                row[f"{m}"] = rep["after"].get(m, math.nan)
            rows.append(row)
    return rows


def write_text(path: Path, text: str) -> None:
    """Write ``text`` through a temp file in the same folder and one rename (the temp file is
    removed if anything fails): a reader, or an interrupted run, never sees half a report."""
    write_atomic(path, text.encode())


def write_csv(rows: list[dict], path: Path) -> None:
    """Every row as CSV (a column per key of the first row), written atomically."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
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


def retrain_reference(rows: list[dict]) -> dict[tuple, tuple[float, float]]:
    """Mean (RA, FA) of retrain for each (dataset, forget set), whatever the scenario."""
    ref: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r["last"] and r["method"] == "retrain":
            ref[(r["dataset"], r["forget"])].append(r)
    return {k: (_stats([r["RA"] for r in v])[0], _stats([r["FA"] for r in v])[0]) for k, v in ref.items()}


# Columns whose definition is not the paper's (arXiv 2507.22208 and its public code).
DEVIATIONS = (
    "Columns that differ from the paper's tables: **FRR** is the share of forget-class clips not "
    "recognised (100 − FA); the paper's main public script computes 1 − RA, which repeats RA. **PER** "
    "is not clipped, so it is negative when FA rises; the public code clips it to [0, 100]. **ERB** is "
    "qpae's erasure–retention balance 2(100 − FA)·RA/((100 − FA) + RA); the paper's ERB values "
    "fit 2·FA·RA/(FA + RA), which rises with FA and is shown as **ERB_paper** for comparison only."
)


def markdown(rows: list[dict], schedule: str) -> str:
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
    head = ["method", *METRIC_ORDER, "wall s", "% of pretraining", "ΔRA vs retrain", "ΔFA vs retrain"]
    for (scenario, dataset, forget), entries in sorted(by_table.items()):
        seeds = len(entries[0][2])
        lines += [f"## {scenario} — {dataset}, forget {forget} ({seeds} seeds)", ""]
        if (dataset, forget) not in ref:
            lines += ["No `retrain` ran on this dataset and forget set: the Δ columns show —.", ""]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        original = entries[0][2]
        lines.append(
            "| original | "
            + " | ".join(_cell([r[f"before_{m}"] for r in original]) for m in METRIC_ORDER)
            + " | | | | |"
        )
        order = lambda e: (e[0] != "retrain", e[0], e[1] not in ("default", "full"), e[1])  # noqa: E731
        for method, variant, sel in sorted(entries, key=order):
            name = method if variant in ("default", "full") else f"{method} ({variant})"
            ra_ref, fa_ref = ref.get((dataset, forget), (math.nan, math.nan))
            ra, fa = _stats([r["RA"] for r in sel])[0], _stats([r["FA"] for r in sel])[0]
            gap = [f"{ra - ra_ref:+.1f}", f"{fa - fa_ref:+.1f}"] if not math.isnan(ra_ref) else ["—", "—"]
            cells = [_cell([r[m] for r in sel]) for m in METRIC_ORDER]
            share = _cell([100 * r["wall_s"] / r["pretrain_s"] for r in sel])
            lines.append(
                f"| {name} | " + " | ".join(cells) + f" | {_cell([r['wall_s'] for r in sel])} | "
                f"{share} | " + " | ".join(gap) + " |"
            )
        lines.append("")
    return "\n".join(lines)


def plot_frontier(rows: list[dict], path: Path) -> Path:
    """FA vs RA after unlearning, one marker per method: the privacy–utility frontier."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    by_method: dict[str, list] = defaultdict(list)
    for (scenario, _, _, method, variant), sel in groups(rows).items():
        if scenario != "ablation":  # the sweeps have a plot of their own
            name = method if variant in ("default", "full") else f"{method} ({variant})"
            by_method[name].append((_stats([r["FA"] for r in sel])[0], _stats([r["RA"] for r in sel])[0]))
    for method, points in sorted(by_method.items()):
        fa, ra = zip(*points, strict=True)
        ax.scatter(fa, ra, label=method, s=40, alpha=0.8)
    ax.set_xlabel("forget accuracy FA (%) — lower forgets more")
    ax.set_ylabel("retain accuracy RA (%)")
    ax.set_title("Privacy–utility frontier (every scenario)")
    ax.legend(fontsize=8)
    return save(fig, path)


def plot_sweeps(rows: list[dict], path: Path) -> Path | None:
    """RA and FA over the λ and α sweeps of the ablation scenario."""
    sweep = [r for r in rows if r["scenario"] == "ablation" and r["last"]]
    if not sweep:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, (param, default, values) in zip(
        axes, (("lambda", 1.0, (0.5, 1.0, 1.5, 2.0)), ("alpha", 0.5, (0.2, 0.35, 0.5))), strict=True
    ):
        ra, fa = [], []
        for v in values:
            name = "full" if v == default else f"{param}{v}"
            sel = [r for r in sweep if r["variant"] == name]
            ra.append(_stats([r["RA"] for r in sel])[0])
            fa.append(_stats([r["FA"] for r in sel])[0])
        ax.plot(values, ra, "o-", label="RA")
        ax.plot(values, fa, "s--", label="FA")
        ax.set_xlabel(param)
        ax.set_ylabel("%")
        ax.set_title(f"QPAudioEraser {param} sweep")
        ax.legend()
    return save(fig, path)


def plot_sequential(rows: list[dict], path: Path) -> Path | None:
    """RA after each request of the sequential scenario, per method."""
    seq = [r for r in rows if r["scenario"] == "sequential"]
    if not seq:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in sorted({r["method"] for r in seq}):
        ks = sorted({r["request"] for r in seq if r["method"] == method})
        ax.plot(
            ks,
            [_stats([r["RA"] for r in seq if r["method"] == method and r["request"] == k])[0] for k in ks],
            "o-",
            label=method,
        )
    ax.set_xlabel("request")
    ax.set_ylabel("retain accuracy RA (%)")
    ax.set_title("Sequential deletion requests")
    ax.legend()
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
    """Per dataset and forget set: every audit measure per model, mean ± std over seeds."""
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
    for (scenario, dataset, forget), entries in sorted(by_group.items()):
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
