"""Forgetting a person in verification mode, the operational half: their voiceprint leaves the
enrolment store, and their voiceprint leaves the score-normalisation cohort.

:func:`plan_store_edits` reads and checks both stores before any work (a person who is not
enrolled is refused; a store made for another dataset or by another encoder than the model being
erased from is refused), and :func:`apply_store_edits` writes each store whole (temp file, fsync,
rename), optionally re-enrolling the people who stay with a new encoder version (their old
voiceprints were made by the old encoder and no longer match its embeddings). Each edit returns
what a receipt records: the names removed and the store's sha256 before and after.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from qpae.verification.enrolment import EnrolmentError, EnrolmentStore

KINDS = ("enrolment", "cohort")


@dataclass(frozen=True)
class StoreEdit:
    """One store's planned edit: the store as read (and its bytes' sha256), the names it loses."""

    kind: str
    path: Path
    store: EnrolmentStore
    sha256_before: str
    remove: tuple[str, ...]


def plan_store_edits(
    names: Sequence[str],
    enrolment: str | Path | None,
    cohort: str | Path | None = None,
    dataset: str | None = None,
    encoder_sha256: str | None = None,
) -> list[StoreEdit]:
    """The edits that forget ``names``, checked before anything is written.

    Every name must be enrolled in the enrolment store; the cohort (optional) loses those of them
    it holds. With ``dataset`` / ``encoder_sha256``, a store whose ``meta`` names another dataset
    or another encoder is refused.

    Raises:
        FileNotFoundError: a store is missing.
        EnrolmentError: a name not enrolled, the same file given twice, or a store of another
            dataset or encoder (nothing is modified).
    """
    names = tuple(str(n) for n in names)
    if not names:
        raise EnrolmentError("name at least one person to forget")
    if enrolment is None:
        raise EnrolmentError(
            "verification-mode forgetting needs the enrolment store (verification.enrolment=…)"
        )
    paths = {"enrolment": Path(enrolment), **({"cohort": Path(cohort)} if cohort is not None else {})}
    if len(paths) == 2 and paths["enrolment"].resolve() == paths["cohort"].resolve():
        raise EnrolmentError(f"the enrolment store and the cohort are the same file ({paths['enrolment']})")
    edits = []
    for kind, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"no {kind} store at {path}; make one with qpae-enrol")
        data = path.read_bytes()
        store = EnrolmentStore.load(path)
        made_for, made_by = store.meta.get("dataset"), store.meta.get("encoder_sha256")
        if dataset is not None and made_for is not None and made_for != dataset:
            raise EnrolmentError(f"the {kind} store {path} was made for {made_for}, not {dataset}")
        if encoder_sha256 is not None and made_by is not None and made_by != encoder_sha256:
            raise EnrolmentError(
                f"the {kind} store {path} was made by the encoder {made_by[:12]}…, not by the model being "
                f"erased from ({encoder_sha256[:12]}…): its voiceprints are another model's"
            )
        if kind == "enrolment":
            missing = [n for n in names if n not in store.names]
            if missing:
                raise EnrolmentError(
                    f"cannot forget {missing} in verification mode: not enrolled in {path} "
                    f"(enrolled: {list(store.names)}); nothing was modified"
                )
        remove = tuple(n for n in names if n in store.names)
        edits.append(StoreEdit(kind, path, store, hashlib.sha256(data).hexdigest(), remove))
    return edits


def apply_store_edits(
    edits: Sequence[StoreEdit],
    reenrol: Callable[[EnrolmentStore], EnrolmentStore] | None = None,
    encoder_sha256: str | None = None,
) -> list[dict]:
    """Write each planned edit whole; ``reenrol`` remakes the remaining voiceprints with a new
    encoder version (whose sha256 the store then records). A store changed on disk since it was
    planned is refused (someone else edited it): it and the stores after it are left as they are.

    Returns one receipt record per store: kind, path, removed names, sha256 before and after,
    how many people it holds after, and whether the others were re-enrolled."""
    records = []
    for edit in edits:
        now = hashlib.sha256(edit.path.read_bytes()).hexdigest()
        if now != edit.sha256_before:
            raise EnrolmentError(
                f"the {edit.kind} store {edit.path} changed since this request read it; nothing more was "
                f"written (edited so far: {[r['store'] for r in records]})"
            )
        after = edit.store.without(edit.remove)
        if reenrol is not None:
            after = reenrol(after)
            after = EnrolmentStore(
                after.names, after.voiceprints, after.clips, {**after.meta, "encoder_sha256": encoder_sha256}
            )
        sha_after = after.save(edit.path) if (edit.remove or reenrol is not None) else edit.sha256_before
        records.append(
            {
                "kind": edit.kind,
                "store": str(edit.path),
                "removed": sorted(edit.remove),
                "sha256_before": edit.sha256_before,
                "sha256_after": sha_after,
                "people_after": len(after.names),
                "reenrolled_with": encoder_sha256 if reenrol is not None else None,
            }
        )
    return records


__all__ = ["KINDS", "StoreEdit", "apply_store_edits", "plan_store_edits"]
