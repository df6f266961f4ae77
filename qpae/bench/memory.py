"""Memory and store-change benchmark: what the feature store costs as the corpus grows.

* :func:`pretrain_peaks` runs ``qpae-pretrain`` (small CNN, synthetic speaker corpus) in a fresh
  process per corpus size and samples the process's memory from ``/proc``: peak RSS (the kernel's
  ``VmHWM``) and peak anonymous memory (``RssAnon``: what the process itself allocated; the rest of
  RSS is file pages, here the memory-mapped shards, which the kernel may drop and re-read). Each size
  is run twice: the first run decodes the corpus into the store, the second reads the store it
  left. A ``legacy`` checkout (a commit before the store) runs the same commands for comparison.
* :func:`store_changes` times a first build of a corpus's store, adding 100 recordings to it and
  purging one speaker from it, to show that a change costs what it changes.

Run: ``make memory`` (``qpae-memory``; settings in ``conf/memory.yaml``). Linux only (``/proc``).
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from qpae.data.manifest import ManifestDataModule
from qpae.data.synthetic_corpus import build_speaker_corpus

log = logging.getLogger(__name__)

_FIELDS = ("VmRSS", "RssAnon", "RssFile", "VmHWM")


def _status(pid: int) -> dict[str, int]:
    """The memory fields of /proc/<pid>/status in bytes ({} once the process is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in _FIELDS:
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        return {}
    return out


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children", encoding="ascii") as fh:
                    kids = [int(k) for k in fh.read().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def watch(cmd: list[str], cwd: Path, env: dict, log_file: Path, interval_s: float = 0.05) -> dict:
    """Run ``cmd`` and sample its memory (with its child processes') until it exits.

    Returns peak RSS in MiB (the larger of the main process's ``VmHWM`` and the sampled sum over
    the process tree), peak anonymous and file-backed RSS (sampled sums), wall seconds and the
    exit status."""
    peak = {"rss": 0, "anon": 0, "file": 0, "hwm": 0}
    start = time.perf_counter()
    with open(log_file, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            main = _status(proc.pid)
            tree = [main] + [_status(p) for p in _descendants(proc.pid)]
            peak["hwm"] = max(peak["hwm"], main.get("VmHWM", 0))
            peak["rss"] = max(peak["rss"], sum(s.get("VmRSS", 0) for s in tree))
            peak["anon"] = max(peak["anon"], sum(s.get("RssAnon", 0) for s in tree))
            peak["file"] = max(peak["file"], sum(s.get("RssFile", 0) for s in tree))
            time.sleep(interval_s)
    mib = 1 << 20
    return {
        "peak_rss_mib": round(max(peak["rss"], peak["hwm"]) / mib),
        "peak_anon_mib": round(peak["anon"] / mib),
        "peak_file_mib": round(peak["file"] / mib),
        "wall_s": round(time.perf_counter() - start, 1),
        "rc": proc.returncode,
    }


def pretrain_command(
    n_speakers: int, repetitions: int, epochs: int, root: Path, data: Path, resize: list[int] | None = None
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "qpae.cli.pretrain",
        "dataset=synthetic_speakers",
        f"dataset.n_speakers={n_speakers}",
        f"dataset.repetitions={repetitions}",
        "dataset.batch_size=32",
        "model=small_cnn",
        f"trainer.max_epochs={epochs}",
        "logger=none",
        f"paths.root={root}",
        f"paths.data={data}",
        "record_latest=false",
        "overwrite=true",
        *([f"dataset.features.resize=[{resize[0]},{resize[1]}]"] if resize else []),
    ]


def pretrain_peaks(
    sizes: dict[str, tuple[int, int]],
    epochs: int,
    work_dir: Path,
    data_dir: Path,
    checkouts: dict[str, Path],
    resize: list[int] | None = None,
) -> list[dict]:
    """Peak memory of pretraining at each corpus size, from each checkout, first and second run.

    ``sizes``: name -> (speakers, repetitions); ``checkouts``: name -> a qpae source folder
    (``store``: this one; ``legacy``: one from before the store). Corpora are synthesised into
    ``data_dir`` beforehand (not measured); each checkout gets its own root under ``work_dir``, so
    that its cache starts empty."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="offline", PYTHONPATH="")
    rows = []
    for size, (speakers, reps) in sizes.items():
        build_speaker_corpus(data_dir / "synthetic" / f"speakers-{speakers}x{reps}-s0", speakers, reps)
        for name, checkout in checkouts.items():
            root = (
                work_dir / f"{name}-{size}"
                if not resize
                else work_dir / f"{name}-{size}-{resize[0]}x{resize[1]}"
            )
            shutil.rmtree(root, ignore_errors=True)  # "first" must find no store of an earlier invocation
            root.mkdir(parents=True)
            for run in ("first", "second"):
                cmd = pretrain_command(speakers, reps, epochs, root, data_dir, resize)
                log.info("%s %s (%d speakers x 10 digits x %d) %s run", name, size, speakers, reps, run)
                found = watch(cmd, Path(checkout), dict(env, PYTHONPATH=str(checkout)), root / f"{run}.log")
                if found["rc"]:
                    raise RuntimeError(
                        f"{name} {size} {run}: qpae-pretrain failed; see {root / f'{run}.log'}"
                    )
                shape = f"{resize[0]}x{resize[1]}" if resize else "64 mels"
                rows.append(
                    {
                        "code": name,
                        "size": size,
                        "features": shape,
                        "clips": speakers * reps * 10,
                        "run": run,
                        **found,
                    }
                )
                log.info("%s", rows[-1])
    return rows


def store_changes(data_dir: Path, n_speakers: int, repetitions: int, added: int = 100, seed: int = 0) -> dict:
    """Seconds to build a corpus's store without ``added`` of its recordings (drawn at random),
    to add them, to set up again with nothing changed, and to purge one speaker."""
    root = data_dir / "synthetic" / f"speakers-{n_speakers}x{repetitions}-s0"
    manifest = build_speaker_corpus(root, n_speakers, repetitions)
    with manifest.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    rng = np.random.default_rng(seed)
    held = set(rng.choice(len(rows), size=added, replace=False).tolist())
    with tempfile.TemporaryDirectory() as tmp:
        partial = Path(tmp) / "manifest-partial.csv"
        with partial.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            # absolute paths: the recordings' ids are their paths within ``root`` either way
            writer.writerows(
                {**r, "path": str(root / r["path"])} for i, r in enumerate(rows) if i not in held
            )
        cache = Path(tmp) / "cache"

        def timed(manifest_path: Path) -> tuple[float, ManifestDataModule]:
            dm = ManifestDataModule(manifest_path, data_dir=root, cache_dir=cache)
            t0 = time.perf_counter()
            dm.prepare_data()
            return time.perf_counter() - t0, dm

        build_s, _ = timed(partial)
        add_s, dm = timed(manifest)
        again_s, dm = timed(manifest)
        store = dm.store()
        speaker = rows[min(held)]["speaker"]
        shards = len(store.shards(speaker))
        t0 = time.perf_counter()
        store.purge([speaker], reason="benchmark")
        purge_s = time.perf_counter() - t0
        held_speakers = len({rows[i]["speaker"] for i in held})
    return {
        "clips": len(rows),
        "speakers": n_speakers,
        "build_without_added_s": round(build_s, 1),
        "added": added,
        "added_speakers": held_speakers,
        "add_s": round(add_s, 2),
        "unchanged_setup_s": round(again_s, 2),
        "purged_shards": shards,
        "purge_s": round(purge_s, 3),
    }


def markdown(peaks: list[dict], changes: dict | None) -> str:
    lines = [
        "| code | corpus | features | clips | run | peak RSS MiB | peak anon MiB | peak file-backed MiB | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['code']} | {r['size']} | {r.get('features', '64 mels')} | {r['clips']} | {r['run']} | {r['peak_rss_mib']} | {r['peak_anon_mib']} "
        f"| {r['peak_file_mib']} | {r['wall_s']} |"
        for r in peaks
    ]
    if changes:
        lines += [
            "",
            f"Store of {changes['clips']} clips ({changes['speakers']} speakers): first build without "
            f"{changes['added']} of them {changes['build_without_added_s']} s; adding them "
            f"({changes['added_speakers']} speakers) {changes['add_s']} s; set-up with nothing changed "
            f"{changes['unchanged_setup_s']} s; purging one speaker ({changes['purged_shards']} shards) "
            f"{changes['purge_s']} s.",
        ]
    return "\n".join(lines) + "\n"


__all__ = ["markdown", "pretrain_command", "pretrain_peaks", "store_changes", "watch"]
