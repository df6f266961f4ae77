"""The bench's certification: per (dataset, method), the certificate of N runs of the method
against N retrained models (:mod:`qpae.pipeline.certify`), members built in the bench's process
and cached under ``<results>/ensembles`` (shared by every method of a dataset)."""

from __future__ import annotations

import hashlib
import json
import logging
import time

from qpae.audit import certify as cert
from qpae.audit import ensemble as ens
from qpae.checkpoints import sha256_file
from qpae.pipeline.certify import build_member, certify, hydra_value, plan
from qpae.pipeline.config import compose

log = logging.getLogger(__name__)


def certify_overrides(runner, dataset: str, method: str, spec: dict) -> list[str]:
    """The ``certify`` config of one bench certification: the dataset's data and model, the
    method with the profile's schedule and shared unlearning settings (those the method has),
    the original of seed ``spec['seed']`` and the forget class."""
    data = runner.bench["datasets"][dataset]
    base = [
        *runner.base,
        *data["overrides"],
        f"model={data['model']}",
        f"method={method}",
        f"schedule={runner.bench.get('schedule', 'paper')}",
        "trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
        f"paths.output_dir={runner.results_dir}/tmp",
    ]
    keys = compose("certify", base).unlearn
    shared = [
        o
        for o in runner.bench.get("unlearn_overrides", [])
        if o.split("=", 1)[0].removeprefix("unlearn.") in keys
    ]
    original = runner.pretrained(dataset, int(spec.get("seed", 0)))
    return [
        *base,
        *shared,
        "input=" + hydra_value(str(original)),
        "forget_index=[" + ",".join(map(str, spec.get("forget_index", [0]))) + "]",
        f"certify.n={int(spec['n'])}",
        "certify.cache=" + hydra_value(str(runner.results_dir / "ensembles")),
        "wandb=false",
    ]


def certify_method(runner, dataset: str, method: str, spec: dict) -> dict:
    """One certificate, computed now or read back (keyed by its overrides and the original's
    content: a pretraining run again at the same path is a new certificate)."""
    overrides = certify_overrides(runner, dataset, method, spec)
    original = sha256_file(runner.pretrained(dataset, int(spec.get("seed", 0))))
    tag = hashlib.sha256(json.dumps([overrides, original]).encode()).hexdigest()[:10]
    out = runner.results_dir / "certify" / f"{dataset}-{method}-n{spec['n']}-{tag}"
    done = out / "certificate" / "certificate.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    cfg = compose("certify", [*overrides, "output_dir=" + hydra_value(str(out))])

    return certify(cfg, build_missing=_builder(overrides, f"{dataset}/{method}", int(spec["n"])))


def _builder(overrides: list[str], label: str, n: int):
    """Builds missing members in the bench's own process, one after the other."""

    def build_here(_cfg, kind: str, members: list[int], _request) -> None:
        for i in members:
            log.info("certify %s: %s %d/%d", label, kind, i + 1, n)
            build_member(compose("certify", [*overrides, f"certify.kind={kind}", f"certify.member={i}"]))

    return build_here


def noise_floor(runner, dataset: str, spec: dict) -> dict:
    """The null test of the retrain ensemble grown to ``spec['noise_floor_n']`` members, on its
    first 8, 16, … members: how the instrument's floor and resolution change with N. Retrain
    members are shared with the certificates (the same cache key); only the missing ones train."""
    n = int(spec["noise_floor_n"])
    overrides = certify_overrides(runner, dataset, spec["methods"][0], {**spec, "n": n})
    out = runner.results_dir / "certify" / f"{dataset}-noise-floor-n{n}"
    cfg = compose("certify", [*overrides, "output_dir=" + hydra_value(str(out))])
    p = plan(cfg)
    retrain = p["ensembles"]["retrain"]
    missing = retrain.missing(n)
    started = time.perf_counter()
    if missing:
        _builder(overrides, f"{dataset}/noise floor", n)(cfg, "retrain", missing, p["request"])
    measures = ens.ensemble_measures(retrain, n, p["clips"])
    return {
        "dataset": dataset,
        "forget_class_names": [p["datamodule"].class_names[c] for c in p["request"].forget_classes],
        "by_n": cert.noise_floor(measures["conf_forget"], float(cfg.certify.delta)),
        "member_fit_s": measures["fit_s"],
        "build_wall_s": time.perf_counter() - started,
    }


def check_spec(spec: dict, datasets: dict) -> None:
    """The profile's ``certify`` section, checked before any cell runs."""
    unknown = sorted(set(spec.get("datasets", [])) - set(datasets))
    if unknown or not spec.get("datasets") or not spec.get("methods"):
        raise ValueError(
            f"bench.certify needs datasets (of {sorted(datasets)}) and methods; got datasets "
            f"{spec.get('datasets')} (unknown: {unknown}) and methods {spec.get('methods')}"
        )
    ens.check_members(spec.get("n"))
    unknown = sorted(set(spec.get("noise_floor_datasets", [])) - set(spec["datasets"]))
    if unknown:
        raise ValueError(f"bench.certify.noise_floor_datasets must be certified datasets; unknown: {unknown}")
    floor = spec.get("noise_floor_n")
    if floor is not None and (isinstance(floor, bool) or not isinstance(floor, int) or floor < 8):
        raise ValueError(
            f"bench.certify.noise_floor_n must be a whole number >= 8 (the null test's smallest N), got {floor!r}"
        )


def certify_all(runner, spec: dict) -> tuple[list[dict], list[dict]]:
    """Every (dataset, method) of the profile's ``certify`` section, with its name; then, where
    the section sets ``noise_floor_n``, each dataset's noise floor by N."""
    out, floors = [], []
    for dataset in spec["datasets"]:
        for method in spec["methods"]:
            log.info("certify %s / %s (N = %d)", dataset, method, spec["n"])
            # the bench's names win over the certificate's fields of those names (descriptions)
            body = certify_method(runner, dataset, method, spec)
            out.append({**body, "dataset": dataset, "method": method})
        if spec.get("noise_floor_n") and dataset in spec.get("noise_floor_datasets", spec["datasets"]):
            log.info("noise floor %s (N up to %d)", dataset, spec["noise_floor_n"])
            floors.append(noise_floor(runner, dataset, spec))
    return out, floors


__all__ = ["certify_all", "certify_method", "check_spec", "noise_floor"]
