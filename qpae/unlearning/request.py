"""A deletion request: which classes to forget now, and which were forgotten before."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


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
            raise ValueError("the forget set is empty")
        bad = sorted(c for c in new | old if not 0 <= c < self.num_classes)
        if bad:
            raise ValueError(f"forget classes {bad} out of range 0..{self.num_classes - 1}")
        if new & old:
            raise ValueError(f"classes {sorted(new & old)} were already forgotten by an earlier request")
        if len(new | old) >= self.num_classes:
            raise ValueError("cannot forget every class: nothing would be left to retain")

    @property
    def all_forgotten(self) -> tuple[int, ...]:
        """Every class the model must not recognise after this request."""
        return tuple(sorted(set(self.forget_classes) | set(self.previously_forgotten)))

    @classmethod
    def resolve(
        cls, forget: Sequence[int | str], class_names: Sequence[str], previously_forgotten: Sequence[int] = ()
    ) -> ForgetRequest:
        """Build a request from class indices or class names (e.g. a speaker's name)."""
        names = list(class_names)
        indices = []
        for item in forget:
            if isinstance(item, str) and not item.lstrip("-").isdigit():
                if item not in names:
                    raise ValueError(f"unknown class {item!r}; classes: {names}")
                indices.append(names.index(item))
            else:
                indices.append(int(item))
        return cls(tuple(sorted(set(indices))), len(names), tuple(sorted(previously_forgotten)))
