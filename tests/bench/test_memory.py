"""The memory benchmark's instrument: it sees what a process allocates, and the store-change
timings come from a store that really changed."""

import logging
import sys
from pathlib import Path

import pytest

from qpae.bench.memory import markdown, store_changes, watch

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc (Linux)")


def test_watch_sees_anonymous_memory_a_process_allocates(tmp_path):
    code = "import time; b = bytearray(300 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.0)"
    found = watch([sys.executable, "-c", code], tmp_path, {}, tmp_path / "log.txt")
    assert found["rc"] == 0
    assert found["peak_anon_mib"] >= 250  # 300 MiB touched; the interpreter adds, never removes
    assert found["peak_rss_mib"] >= found["peak_anon_mib"]


def test_watch_reports_a_failing_command(tmp_path):
    found = watch([sys.executable, "-c", "raise SystemExit(3)"], tmp_path, {}, tmp_path / "log.txt")
    assert found["rc"] == 3


def test_store_changes_add_only_what_was_held_back_and_purge_one_speaker(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="qpae.data.base"):
        changes = store_changes(tmp_path, n_speakers=3, repetitions=2, added=4)
    decoded = [m for m in caplog.messages if "recordings decoded" in m]
    assert [m.split(": ")[-1].split(" recordings")[0] for m in decoded] == ["56", "4"]
    assert changes["clips"] == 60 and changes["added"] == 4
    assert 1 <= changes["added_speakers"] <= 3
    assert changes["purged_shards"] >= 1
    text = markdown([], changes)
    assert "adding them" in text and "purging one speaker" in text
