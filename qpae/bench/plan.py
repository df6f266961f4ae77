"""The benchmark plan: which cells (scenario × dataset × method × variant × seed) to run.

A scenario says what to forget in exactly one of four ways (the same rule as ``qpae-unlearn``:
names are names, indices are indices):

* ``forget: [[spanish], [theo, lucas]]`` — class **names**, one list per forget set, resolved
  against each dataset's class names (an unknown name fails at plan time, listing the valid ones);
* ``forget_index: [[0], [0, 20]]`` — class **indices**;
* ``fraction: 0.1`` — that share of the classes, evenly spaced;
* ``sequential: 3`` — three single-class requests in a row, evenly spaced.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from qpae.unlearning.request import ClassSelection, RequestError, plan_requests

FORGET_KEYS = ("forget", "forget_index", "fraction", "sequential")


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
    # the dataset spec, the shared unlearning overrides and the run overrides (canonical JSON)
    context: str = ""

    @property
    def name(self) -> str:
        """A readable name (not unique across settings: see :meth:`key`)."""
        return f"{self.scenario}-{self.dataset}-{self.method}-{self.variant}-s{self.seed}"

    def key(self, method_settings: Mapping) -> str:
        """The cell's cache id: its name and a digest of everything that decides its result —
        the forget requests, the variant's overrides, the dataset spec, the shared unlearning and
        run overrides (``context``) and the method's resolved settings. A finished cell with
        this id is read back, not run again; any change to these runs it afresh."""
        blob = json.dumps(
            {
                "cell": [self.scenario, self.dataset, self.method, self.variant, self.seed],
                "requests": self.requests,
                "overrides": self.overrides,
                "context": self.context,
                "method_settings": method_settings,
            },
            sort_keys=True,
        )
        return f"{self.name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def dataset_spec(bench: Mapping, dataset: str) -> dict:
    """What decides a dataset's data and pretrained models: its profile entry without the list
    of methods the bench skips on it."""
    return {k: v for k, v in bench["datasets"][dataset].items() if k != "exclude_methods"}


def forget_sets(spec: Mapping, class_names: Sequence[str]) -> list[tuple[tuple[int, ...], ...]]:
    """A scenario's forget request sequences as class indices (see the module docstring).

    Raises:
        ValueError: not exactly one of ``forget``, ``forget_index``, ``fraction``, ``sequential``.
        RequestError: an unknown class name or an index out of range.
    """
    given = [k for k in FORGET_KEYS if spec.get(k) is not None]
    if len(given) != 1:
        raise ValueError(f"a scenario sets exactly one of {', '.join(FORGET_KEYS)}; got {given or 'none'}")
    num_classes = len(class_names)
    if "sequential" in given:
        k = int(spec["sequential"])
        step = max(1, num_classes // k)
        return [tuple((c,) for c in range(0, step * k, step))]
    if "fraction" in given:
        n = max(1, round(num_classes * float(spec["fraction"])))
        step = num_classes / n
        return [(tuple(sorted({int(i * step) for i in range(n)})),)]
    by_index = "forget_index" in given
    out = []
    for group in spec[given[0]]:
        values = tuple(group)
        selection = ClassSelection(indices=values) if by_index else ClassSelection(names=values)
        out.append((selection.resolve(class_names),))
    return out


def plan(
    bench: Mapping, class_names: Mapping[str, Sequence[str]], run_overrides: Sequence[str] = ()
) -> list[Cell]:
    """Expand the bench config into cells, in a deterministic order.

    A scenario may set its own ``seeds`` (default: the profile's). ``retrain`` runs once per
    dataset, forget set and seed whatever the scenario's ``variants`` (they set the unlearning
    methods; retrain follows the original's recipe).

    ``class_names`` maps each dataset to its classes (names resolve against them); every request
    sequence is checked now, before anything runs. ``run_overrides`` (applied to every run)
    belong to each cell's cache key.

    Raises:
        RequestError: a scenario names an unknown class, an index out of range, a class twice,
            or leaves nothing to retain (the message names the scenario and dataset).
    """
    cells = []
    shared = list(bench.get("unlearn_overrides", []))
    for scenario, spec in bench["scenarios"].items():
        methods = spec.get("methods", bench["methods"])
        variants = spec.get("variants", {"default": []})
        for dataset in spec["datasets"]:
            names = class_names[dataset]
            try:
                sequences = forget_sets(spec, names)
                for requests in sequences:
                    plan_requests([ClassSelection(indices=r) for r in requests], names)
            except RequestError as err:
                raise RequestError(f"bench scenario {scenario!r} on {dataset}: {err}") from None
            skip = bench.get("datasets", {}).get(dataset, {}).get("exclude_methods", [])
            context = json.dumps(
                {
                    "dataset": dataset_spec(bench, dataset),
                    "unlearn_overrides": shared,
                    "run_overrides": list(run_overrides),
                },
                sort_keys=True,
            )
            for requests in sequences:
                for method in (m for m in methods if m not in skip):
                    # a scenario's variants are settings of the unlearning methods; retrain (the
                    # reference, the original's pretraining recipe) runs once, without them
                    method_variants = {"default": []} if method == "retrain" else variants
                    for variant, overrides in method_variants.items():
                        for seed in spec.get("seeds", bench["seeds"]):
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
