"""The benchmark plan: which cells (scenario × dataset × method × variant × seed) to run."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Cell:
    """One unlearning experiment. ``requests`` has one entry, or several for a sequence."""

    scenario: str
    dataset: str
    method: str
    variant: str
    seed: int
    requests: tuple[tuple[int, ...], ...]
    overrides: tuple[str, ...] = field(default=())
    context: str = ""  # the dataset spec and shared overrides: changing them invalidates the cell

    @property
    def key(self) -> str:
        """A stable id: a finished cell with this id is not run again."""
        blob = json.dumps(
            [
                self.scenario,
                self.dataset,
                self.method,
                self.variant,
                self.seed,
                self.requests,
                self.overrides,
                self.context,
            ]
        )
        digest = hashlib.sha256(blob.encode()).hexdigest()[:10]
        return f"{self.scenario}-{self.dataset}-{self.method}-{self.variant}-s{self.seed}-{digest}"


def forget_sets(spec: dict, num_classes: int) -> list[tuple[tuple[int, ...], ...]]:
    """A scenario's forget requests: explicit ``forget`` lists, a ``fraction`` of the classes
    (evenly spaced), or a ``sequential`` run of k single-class requests."""
    if "sequential" in spec:
        k = int(spec["sequential"])
        step = max(1, num_classes // k)
        return [tuple((c,) for c in range(0, step * k, step))]
    if "fraction" in spec:
        n = max(1, round(num_classes * float(spec["fraction"])))
        step = num_classes / n
        return [(tuple(sorted({int(i * step) for i in range(n)})),)]
    return [(tuple(f),) for f in spec["forget"]]


def plan(bench: dict, num_classes: dict[str, int]) -> list[Cell]:
    """Expand the bench config into cells, in a deterministic order."""
    cells = []
    shared = bench.get("unlearn_overrides", [])
    for scenario, spec in bench["scenarios"].items():
        methods = spec.get("methods", bench["methods"])
        variants = spec.get("variants", {"default": []})
        for dataset in spec["datasets"]:
            skip = bench.get("datasets", {}).get(dataset, {}).get("exclude_methods", [])
            for requests in forget_sets(spec, num_classes[dataset]):
                for method in (m for m in methods if m not in skip):
                    for variant, overrides in variants.items():
                        context = json.dumps([bench.get("datasets", {}).get(dataset), shared], sort_keys=True)
                        for seed in bench["seeds"]:
                            cells.append(
                                Cell(
                                    scenario,
                                    dataset,
                                    method,
                                    variant,
                                    seed,
                                    requests,
                                    tuple(overrides),
                                    context,
                                )
                            )
    return cells
