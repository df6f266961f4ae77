"""The receipt chain: every registered version, rollback and purge gets a record, and each record
holds the sha256 of the one before it, so an edited, removed or reordered receipt is detected.

Records are JSON files ``receipts/<seq>.json``; the ledger keeps each one's sha256. A check
(:func:`chain_problem`) recomputes every hash from the files: an edit changes a file's hash, a
removed record leaves a gap in ``seq`` or a ``previous_sha256`` that points nowhere. The head's
sha256 (``qpae-erase status`` prints it) is what an operator anchors elsewhere, so that even the
newest record cannot be removed unnoticed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence

CHAIN_VERSION = 1


def record_bytes(record: dict) -> bytes:
    """The canonical bytes of a record (sorted keys, UTF-8): equal records, equal hashes."""
    return (json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def make_record(seq: int, previous_sha256: str | None, kind: str, body: dict) -> dict:
    """Record ``seq`` of the chain, linked to the one before it."""
    if seq < 1 or (seq == 1) != (previous_sha256 is None):
        raise ValueError("record 1 has no previous record; every later one has one")
    return {
        "chain_version": CHAIN_VERSION,
        "seq": seq,
        "previous_sha256": previous_sha256,
        "kind": kind,
        **body,
    }


def chain_problem(
    rows: Sequence[tuple[int, str, str | None]], read: Callable[[int], bytes | None]
) -> str | None:
    """The first thing wrong with a chain, in words, or None when it is intact.

    Args:
        rows: the ledger's (seq, sha256, previous sha256) of every record, in seq order.
        read: the bytes of record ``seq``'s file, or None when it is missing.
    """
    previous = None
    for expected_seq, (seq, sha, prev) in enumerate(rows, start=1):
        if seq != expected_seq:
            return f"receipt record {expected_seq} is missing from the ledger (the next one is {seq})"
        if prev != previous:
            return f"receipt record {seq}'s link in the ledger does not match record {seq - 1}"
        data = read(seq)
        if data is None:
            return f"receipt record {seq} ({seq:06d}.json) was removed"
        if hashlib.sha256(data).hexdigest() != sha:
            return f"receipt record {seq} ({seq:06d}.json) was edited: its sha256 differs from the ledger's"
        try:
            record = json.loads(data)
        except ValueError:
            return f"receipt record {seq} ({seq:06d}.json) is not JSON"
        if record.get("seq") != seq or record.get("previous_sha256") != previous:
            return f"receipt record {seq} ({seq:06d}.json) does not link to record {seq - 1}"
        previous = sha
    return None
