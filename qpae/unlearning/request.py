"""A deletion request: which classes to forget now, and which were forgotten before.

Names are names and indices are indices. A user names a class (``forget=[theo]``,
``forget=['01']``) or gives its index through a separate key (``forget_index=[0]``); a value is
never read as an index because it happens to be made of digits. Where an unquoted number could
mean both a class name and an index (labels ``10, 2, 20``: is ``2`` the class "2" or the class
at index 2?), the request is refused with both readings shown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from qpae.data.labels import normalise_label


class RequestError(ValueError):
    """A forget request that cannot be honoured as written; raised before any work."""


def normalise_name(name: str) -> str:
    """The form class names are compared in: the data layer's label normalisation (NFC, outer
    whitespace stripped, inner runs collapsed), so that a request spells names as the data does."""
    return normalise_label(name)


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {value}"
    if isinstance(value, float):
        return f"the number {value}"
    return repr(value)


@dataclass(frozen=True)
class ClassSelection:
    """The classes one request names: by ``names`` or by ``indices``, never both.

    ``names`` keeps the values as they were given: a string is a name; an ``int`` (an unquoted
    number on the command line) is a name too, but is refused when it could also be read as a
    different class's index. ``indices`` are indices only.
    """

    names: tuple[str | int, ...] = ()
    indices: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.names and self.indices:
            raise RequestError("a request names classes by name or by index, not both")
        if not self.names and not self.indices:
            raise RequestError("the request names no class")
        for v in self.names:
            if isinstance(v, bool) or not isinstance(v, str | int):
                raise RequestError(f"a class name must be text, got {_describe(v)}")
            if isinstance(v, str) and not normalise_name(v):
                raise RequestError("a class name is empty")
        for v in self.indices:
            if isinstance(v, bool) or not isinstance(v, int):
                raise RequestError(f"a class index must be a whole number, got {_describe(v)}")

    def describe(self) -> str:
        """The selection as the user wrote it, for messages."""
        if self.indices:
            return f"forget_index={list(self.indices)}"
        return f"forget={list(self.names)}"

    def resolve(self, class_names: Sequence[str]) -> tuple[int, ...]:
        """The class indices this selection means for a model with ``class_names``.

        Raises:
            RequestError: an unknown name, an out-of-range index, or an ambiguous number.
        """
        names = [normalise_name(c) for c in class_names]
        lookup: dict[str, int] = {}
        for k, c in enumerate(names):
            if c in lookup:  # e.g. "george" and "george " from an older model or another loader
                raise RequestError(
                    f"class names {class_names[lookup[c]]!r} and {class_names[k]!r} differ only in "
                    "spacing or Unicode form: refusing to guess which one is meant"
                )
            lookup[c] = k
        listing = _listing(class_names)
        out = []
        if self.indices:
            for i in self.indices:
                if not 0 <= i < len(names):
                    raise RequestError(
                        f"class index {i} is out of range 0..{len(names) - 1}; classes: {listing}"
                    )
                out.append(i)
        for v in self.names:
            key = normalise_name(str(v))
            as_name = lookup.get(key)
            as_index = v if isinstance(v, int) and 0 <= v < len(names) else None
            if as_name is not None and as_index is not None and as_name != as_index:
                raise RequestError(
                    f"forget={v} is ambiguous: the class named {key!r} (index {as_name}) or the class "
                    f"at index {v} ({class_names[v]!r})? Write forget=['{key}'] for the name or "
                    f"forget_index=[{v}] for the index."
                )
            if as_name is None:
                hint = ""
                padded = [
                    c for c in names if key.isdigit() and c.isdigit() and c.lstrip("0") == key.lstrip("0")
                ]
                if padded:
                    hint += f" Did you mean {padded[0]!r}? (quote it: forget=['{padded[0]}'])"
                if as_index is None and key.isdigit() and int(key) < len(names):
                    as_index = int(key)  # only for the hint: a name is never read as an index
                if as_index is not None:
                    hint += (
                        f" A number in forget= is a class name; to forget the class at index {as_index} "
                        f"({class_names[as_index]!r}) write forget_index=[{as_index}] (FORGET_INDEX={as_index} "
                        "with make)."
                    )
                raise RequestError(f"unknown class {key!r}; classes: {listing}.{hint}")
            out.append(as_name)
        if len(set(out)) != len(out):
            raise RequestError(f"{self.describe()} names the same class twice")
        return tuple(sorted(out))


def _listing(class_names: Sequence[str], limit: int = 60) -> str:
    shown = ", ".join(f"{k}={c}" for k, c in enumerate(class_names[:limit]))
    return shown + (f", … ({len(class_names)} in all)" if len(class_names) > limit else "")


def _as_list(value: object, key: str) -> list | None:
    """A config value as a list: None stays None, a scalar becomes a one-element list."""
    if value is None:
        return None
    if isinstance(value, str | int | float | bool):
        return [value]
    try:
        return list(value)  # ListConfig, tuple, list
    except TypeError:
        raise RequestError(f"{key} must be a list, e.g. {key}=[...]; got {_describe(value)}") from None


def selections_from_config(
    forget: object = None,
    forget_index: object = None,
    requests: object = None,
    requests_index: object = None,
) -> list[ClassSelection]:
    """The requests a run was asked for, from its four mutually exclusive config keys.

    ``forget`` / ``forget_index``: one request by names / by indices. ``requests`` /
    ``requests_index``: a sequence of requests (lists of names / of indices), served in order.
    Exactly one key must be set; an empty list is an error, never a fallback to a default.
    """
    given = {
        k: v
        for k, v in {
            "forget": forget,
            "forget_index": forget_index,
            "requests": requests,
            "requests_index": requests_index,
        }.items()
        if v is not None
    }
    if not given:
        raise RequestError(
            "nothing to forget: set forget=[NAME,...] (class names) or forget_index=[I,...] "
            "(class indices), or requests=[[...],[...]] / requests_index=[[...],[...]] for a sequence"
        )
    if len(given) > 1:
        raise RequestError(f"set only one of {', '.join(given)}: they are alternatives")
    ((key, value),) = given.items()
    items = _as_list(value, key)
    if not items:
        raise RequestError(f"{key} is empty: name at least one class")
    by_index = key.endswith("_index")
    if key.startswith("requests"):
        groups = []
        for k, group in enumerate(items, start=1):
            group_items = _as_list(group, f"{key}[{k - 1}]")
            if not group_items:
                raise RequestError(f"request {k} of {key} is empty")
            groups.append(group_items)
    else:
        groups = [items]
    out = []
    for group in groups:
        for v in group:
            if isinstance(v, float) and not math.isfinite(v):
                raise RequestError(f"{key}: {v} is not a class")
        out.append(ClassSelection(indices=tuple(group)) if by_index else ClassSelection(names=tuple(group)))
    return out


@dataclass(frozen=True)
class ForgetRequest:
    """Forget ``forget_classes`` from a ``num_classes``-way model.

    ``previously_forgotten`` are classes erased by earlier requests on the same model: they stay
    forget classes in every loss and metric, but the head phases never touch them again
    (negating a row twice would restore it; mixing into it would leak the new class back).
    """

    forget_classes: tuple[int, ...]
    num_classes: int
    previously_forgotten: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        new, old = set(self.forget_classes), set(self.previously_forgotten)
        if not new:
            raise RequestError("the forget set is empty")
        for c in (*self.forget_classes, *self.previously_forgotten):
            if isinstance(c, bool) or not isinstance(c, int):
                raise RequestError(f"class indices must be whole numbers, got {_describe(c)}")
        bad = sorted(c for c in new | old if not 0 <= c < self.num_classes)
        if bad:
            raise RequestError(f"forget classes {bad} out of range 0..{self.num_classes - 1}")
        if new & old:
            raise RequestError(f"classes {sorted(new & old)} were already forgotten by an earlier request")
        if len(new | old) >= self.num_classes:
            raise RequestError("cannot forget every class: nothing would be left to retain")

    @property
    def all_forgotten(self) -> tuple[int, ...]:
        """Every class the model must not recognise after this request."""
        return tuple(sorted(set(self.forget_classes) | set(self.previously_forgotten)))


def plan_requests(
    selections: Sequence[ClassSelection],
    class_names: Sequence[str],
    previously_forgotten: Sequence[int] = (),
) -> list[ForgetRequest]:
    """Resolve and check a whole sequence of requests before the first one runs.

    Request k starts from the model of request k-1, so it inherits every class forgotten before
    it. Any error in any request (an unknown name, a class forgotten twice, nothing left to
    retain) is raised now, naming the request.
    """
    done = tuple(sorted(previously_forgotten))
    out = []
    for k, selection in enumerate(selections, start=1):
        where = f"request {k} of {len(selections)} ({selection.describe()})" if len(selections) > 1 else ""
        try:
            classes = selection.resolve(class_names)
            request = ForgetRequest(classes, len(class_names), done)
        except RequestError as err:
            raise RequestError(f"{where}: {err}" if where else str(err)) from None
        out.append(request)
        done = request.all_forgotten
    return out
