"""A run's outputs appear all together or not at all, and never over another run's."""

import os

import pytest

from qpae.publish import OutputExistsError, _host, ensure_free, publish_files, remove_stale_leftovers

FILES = {"model.pt": b"weights", "metrics.json": b"{}", "receipt.json": b"{}"}


def test_files_are_published_together(tmp_path):
    out = publish_files(tmp_path / "request-01", FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert (out / "model.pt").read_bytes() == b"weights"
    assert [p.name for p in tmp_path.iterdir()] == ["request-01"]  # no staging folder left


def test_an_occupied_folder_is_refused_and_left_untouched(tmp_path):
    out = tmp_path / "request-01"
    out.mkdir()
    (out / "receipt.json").write_text("another run's receipt")
    with pytest.raises(OutputExistsError, match="another run's outputs"):
        publish_files(out, FILES)
    assert (out / "receipt.json").read_text() == "another run's receipt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["request-01"]
    publish_files(tmp_path / "empty", FILES)  # an empty folder is free


def test_a_failure_while_publishing_leaves_nothing(tmp_path, monkeypatch):
    def killed(*args):
        raise KeyboardInterrupt  # what a Ctrl-C between two writes looks like

    monkeypatch.setattr(os, "rename", killed)
    with pytest.raises(KeyboardInterrupt):
        publish_files(tmp_path / "request-01", FILES)
    assert list(tmp_path.iterdir()) == []


def test_staging_left_by_a_killed_process_is_cleaned(tmp_path):
    dead = tmp_path / f".request-01.staging-{_host()}-999999999-abc"
    dead.mkdir()
    (dead / "model.pt").write_bytes(b"half")
    publish_files(tmp_path / "request-01", FILES)
    assert not dead.exists()


def test_leftovers_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    run = tmp_path / "unlearn" / "fsdd-small_cnn-qpae" / "2026-11-29_23-00-00_abcdef"
    run.mkdir(parents=True)
    dead_stage = run / f".request-01.staging-{_host()}-999999999-x1y2"
    dead_stage.mkdir()
    (dead_stage / "model.pt").write_bytes(b"a model without its receipt")
    dead_temp = run / f".pretrained.pt.{_host()}-999999999.k3j_9.tmp"
    other_host = run / ".request-02.staging-otherhost-999999999-zz"  # may be alive over there
    other_host.mkdir()
    dead_temp.write_bytes(b"half")
    live_temp = run / f".metrics.json.{_host()}-{os.getpid()}.abc.tmp"
    live_temp.write_bytes(b"being written")
    other = run / ".hydra"
    other.mkdir()
    removed = remove_stale_leftovers(tmp_path, recursive=True)
    assert sorted(removed) == sorted([dead_stage, dead_temp])
    assert live_temp.exists() and other.exists() and other_host.exists()
    assert remove_stale_leftovers(tmp_path / "missing") == []


def test_a_file_in_the_way_is_refused(tmp_path):
    (tmp_path / "request-01").write_text("x")
    with pytest.raises(OutputExistsError, match="not a folder"):
        ensure_free(tmp_path / "request-01")
