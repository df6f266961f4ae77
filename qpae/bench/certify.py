"""The bench's certification: per (dataset, method), the certificate of N runs of the method
against N retrained models (:mod:`qpae.pipeline.certify`), members built in the bench's process
and cached under ``<results>/ensembles`` (shared by every method of a dataset)."""

from __future__ import annotations

import hashlib
import json
import logging

from qpae.pipeline.certify import build_member, certify, hydra_value
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
        f"certify.cache={runner.results_dir}/ensembles",
        "wandb=false",
    ]


def certify_method(runner, dataset: str, method: str, spec: dict) -> dict:
    """One certificate, computed now or read back (keyed by its overrides and the original)."""
    overrides = certify_overrides(runner, dataset, method, spec)
    tag = hashlib.sha256(json.dumps(overrides).encode()).hexdigest()[:10]
    out = runner.results_dir / "certify" / f"{dataset}-{method}-n{spec['n']}-{tag}"
    done = out / "certificate" / "certificate.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    cfg = compose("certify", [*overrides, "output_dir=" + hydra_value(str(out))])

    def build_here(_cfg, kind: str, members: list[int], request) -> None:
        for i in members:
            log.info("certify %s/%s: %s %d/%d", dataset, method, kind, i + 1, int(spec["n"]))
            member = compose("certify", [*overrides, f"certify.kind={kind}", f"certify.member={i}"])
            build_member(member)

    return certify(cfg, build_missing=build_here)


def certify_all(runner, spec: dict) -> list[dict]:
    """Every (dataset, method) of the profile's ``certify`` section, with its name."""
    out = []
    for dataset in spec["datasets"]:
        for method in spec["methods"]:
            log.info("certify %s / %s (N = %d)", dataset, method, spec["n"])
            # the bench's names win over the certificate's fields of those names (descriptions)
            body = certify_method(runner, dataset, method, spec)
            out.append({**body, "dataset": dataset, "method": method})
    return out


__all__ = ["certify_all", "certify_method"]
