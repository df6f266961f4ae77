"""The receipt chain's check on hand-made records."""

import hashlib

import pytest

from qpae.service.chain import chain_problem, make_record, record_bytes


def build(n):
    rows, files, previous = [], {}, None
    for seq in range(1, n + 1):
        data = record_bytes(make_record(seq, previous, "erased", {"note": f"record {seq}"}))
        sha = hashlib.sha256(data).hexdigest()
        rows.append((seq, sha, previous))
        files[seq] = data
        previous = sha
    return rows, files


def test_an_intact_chain_has_no_problem():
    rows, files = build(4)
    assert chain_problem(rows, files.get) is None
    assert chain_problem([], files.get) is None


def test_an_edited_record_is_named():
    rows, files = build(4)
    files[2] = files[2].replace(b"record 2", b"record X")
    assert chain_problem(rows, files.get) == (
        "receipt record 2 (000002.json) was edited: its sha256 differs from the ledger's"
    )


def test_an_edited_record_whose_ledger_hash_was_updated_too_breaks_the_next_link():
    rows, files = build(4)
    files[2] = files[2].replace(b"record 2", b"record X")
    rows[1] = (2, hashlib.sha256(files[2]).hexdigest(), rows[1][2])
    rows[2] = (3, rows[2][1], rows[1][1])  # the ledger's link too
    assert "record 3 (000003.json) does not link to record 2" in chain_problem(rows, files.get)


def test_a_removed_record_file_or_row_is_named():
    rows, files = build(4)
    del files[3]
    assert chain_problem(rows, files.get) == "receipt record 3 (000003.json) was removed"
    rows, files = build(4)
    del rows[1]
    assert chain_problem(rows, files.get) == "receipt record 2 is missing from the ledger (the next one is 3)"


def test_records_link_only_forward_from_the_first():
    with pytest.raises(ValueError):
        make_record(1, "ab" * 32, "original", {})
    with pytest.raises(ValueError):
        make_record(2, None, "original", {})
