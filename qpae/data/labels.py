"""One spelling per class name: what a manifest's labels and speakers, and a user's request, mean.

``" George"``, ``"George "`` and ``"Ge\\u0301orge"``-style decompositions name the same person to a
human but are different strings to Python; left alone they become separate classes, and a request
to forget one would leave the others. Names are therefore normalised, and a list whose distinct
names collide once normalised (or differ only by case) is refused rather than silently merged.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence


class LabelCollisionError(ValueError):
    """Distinct raw names that mean the same class (after normalisation, or up to case)."""


def normalise_label(name: str) -> str:
    """Unicode NFC, surrounding whitespace stripped, inner whitespace runs collapsed to one space.

    Case is kept (``"George"`` stays ``"George"``); :func:`normalise_labels` refuses lists in which
    two names differ only by case, since they cannot be told apart reliably by a person either.
    """
    return " ".join(unicodedata.normalize("NFC", name).split())


def normalise_labels(raw: Sequence[str], where: Sequence[str], what: str = "label") -> list[str]:
    """Normalise every name of ``raw``; refuse distinct raw names that collide.

    Args:
        raw: the names as written, one per row.
        where: a row descriptor per name (e.g. ``"list.csv:7"``), quoted in the error.
        what: what the names are (``"label"``, ``"speaker"``), for the error.

    Raises:
        LabelCollisionError: two distinct raw names normalise to the same name, or to names that
            differ only by case; the message names each spelling and its first row.
    """
    first_row: dict[str, str] = {}
    for name, row in zip(raw, where, strict=True):
        first_row.setdefault(name, row)
    spellings: dict[str, list[str]] = {}  # casefolded normal form -> distinct raw spellings
    for name in first_row:
        spellings.setdefault(normalise_label(name).casefold(), []).append(name)
    collisions = [names for names in spellings.values() if len(names) > 1]
    if collisions:
        listed = "; ".join(" vs ".join(f"{n!r} (row {first_row[n]})" for n in names) for names in collisions)
        raise LabelCollisionError(
            f"{len(collisions)} {what}(s) are spelled in more than one way (whitespace, Unicode form or "
            f"case): {listed}. Write each {what} one way."
        )
    return [normalise_label(name) for name in raw]
