"""The manifest loader: encoding, label normalisation, duplicate rows, files that are not files."""

import logging
import os
import shutil
import threading

import numpy as np
import pytest
import soundfile as sf
from audio_samples import voice, write_csv, write_speakers

from qpae.data.base import DataQualityError
from qpae.data.labels import LabelCollisionError, normalise_label
from qpae.data.manifest import ManifestDataModule

TWO_CLASSES = {"george": ["g1", "g2", "g3", "g4"], "lucas": ["l1", "l2", "l3", "l4"]}


def test_normalise_label():
    assert normalise_label("  Jean \t  Luc\n") == "Jean Luc"
    assert normalise_label("Jose\u0301") == normalise_label("Jos\u00e9") == "Jos\u00e9"  # NFC
    assert normalise_label("George") == "George"  # case is kept; collisions by case are refused


def test_manifest_with_a_byte_order_mark_reads(tmp_path):
    rows = write_speakers(tmp_path, TWO_CLASSES)
    manifest = write_csv(tmp_path / "bom.csv", rows, encoding="utf-8-sig")
    assert (tmp_path / "bom.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    recs = ManifestDataModule(manifest, cache_dir=tmp_path / "cache").find_recordings()
    assert len(recs) == 8 and {r.label for r in recs} == {"george", "lucas"}


def test_labels_and_speakers_are_normalised(tmp_path):
    rows = [(p, f"  {label} ", f"{s}\t") for p, label, s in write_speakers(tmp_path, TWO_CLASSES)]
    recs = ManifestDataModule(write_csv(tmp_path / "m.csv", rows)).find_recordings()
    assert {r.label for r in recs} == {"george", "lucas"} and recs[0].speaker == "g1"


@pytest.mark.parametrize(
    "spelling, variant",
    [("george", " george"), ("george", "George"), ("jos\u00e9", "jose\u0301")],
    ids=["whitespace", "case", "unicode-form"],
)
def test_one_label_spelled_two_ways_is_refused_naming_both(tmp_path, spelling, variant):
    rows = write_speakers(tmp_path, {spelling: ["a1", "a2", "a3"], "lucas": ["l1", "l2", "l3"]})
    first = next(i for i, r in enumerate(rows) if r[1] == spelling)
    rows[first + 1] = (rows[first + 1][0], variant, rows[first + 1][2])
    with pytest.raises(LabelCollisionError) as err:
        ManifestDataModule(write_csv(tmp_path / "m.csv", rows)).find_recordings()
    msg = str(err.value)
    assert f"{spelling!r} (row m.csv:{first + 2})" in msg and f"{variant!r} (row m.csv:{first + 3})" in msg


def test_duplicate_rows_are_dropped_and_counted(tmp_path, caplog):
    rows = write_speakers(tmp_path, TWO_CLASSES)
    shutil.copy(tmp_path / rows[0][0], tmp_path / "copy.wav")  # same bytes, another name
    dup_rows = [*rows, rows[0], (str(tmp_path / rows[5][0]), *rows[5][1:]), ("copy.wav", *rows[0][1:])]
    dup_rows.append(("./" + rows[2][0], *rows[2][1:]))
    with caplog.at_level(logging.WARNING):
        recs = ManifestDataModule(write_csv(tmp_path / "m.csv", dup_rows)).find_recordings()
    assert len(recs) == 8 and len({r.path.resolve() for r in recs}) == 8
    assert "dropped 4 duplicate rows (3 listing a listed path, 1 a listed file's bytes)" in caplog.text


def test_duplicate_rows_with_conflicting_labels_are_refused(tmp_path):
    rows = write_speakers(tmp_path, TWO_CLASSES)
    shutil.copy(tmp_path / rows[0][0], tmp_path / "copy.wav")
    for extra, why in (
        ((rows[0][0], "lucas", "g1"), "same path"),
        (("copy.wav", "lucas", "g1"), "same content"),
    ):
        with pytest.raises(ValueError, match=rf"rows m.csv:2 and m.csv:10 list the same file \({why}") as err:
            ManifestDataModule(write_csv(tmp_path / "m.csv", [*rows, extra])).find_recordings()
        assert "('george', 'g1') vs ('lucas', 'g1')" in str(err.value)


def test_duplicated_rows_never_reach_two_splits(tmp_path):
    """Every row listed twice: the copies are dropped, so no file is in two splits."""
    rows = [(f"c{c}_{i}.wav", f"c{c}", f"s{c}") for c in range(3) for i in range(6)]
    for i, (name, *_) in enumerate(rows):
        sf.write(tmp_path / name, voice(0.5, 8_000, 120 + 10 * i, i), 8_000)
    dm = ManifestDataModule(write_csv(tmp_path / "m.csv", rows + rows[::-1]), cache_dir=tmp_path / "cache")
    dm.setup()
    files = {s: {dm.recordings[r].path for r in dm.recording_ids[dm.indices[s]].tolist()} for s in dm.indices}
    assert len(dm.recordings) == len(rows) == sum(map(len, files.values()))
    assert not (
        files["train"] & files["test"] or files["train"] & files["val"] or files["val"] & files["test"]
    )


def test_fifo_row_is_a_counted_bad_file_and_never_opened(tmp_path, caplog):
    rows = write_speakers(tmp_path, {f"c{c}": [f"s{c}"] for c in range(2)})
    rows = [(f"{c}_{i}.wav", label, s) for i in range(12) for c, (_, label, s) in enumerate(rows)]
    for i, (name, *_) in enumerate(rows):
        sf.write(tmp_path / name, voice(0.5, 8_000, 120 + 10 * i, i), 8_000)
    os.mkfifo(tmp_path / "pipe.wav")
    rows.append(("pipe.wav", "c0", "s0"))
    dm = ManifestDataModule(
        write_csv(tmp_path / "m.csv", rows), cache_dir=tmp_path / "cache", max_bad_fraction=0.1
    )
    worker = threading.Thread(target=dm.setup, daemon=True)
    with caplog.at_level(logging.WARNING):
        worker.start()
        worker.join(timeout=120)
    if worker.is_alive():  # something opened the FIFO: release it with a writer, then fail
        os.close(os.open(tmp_path / "pipe.wav", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("setup opened a FIFO named by the manifest and blocked")
    assert len(dm.targets) == 24
    assert "pipe.wav: not a regular file" in caplog.text and "skipped 1 of 25" in caplog.text


def test_short_clips_are_counted_bad(tmp_path, caplog):
    rows = [(f"c{c}_{i}.wav", f"c{c}", f"s{c}") for c in range(2) for i in range(10)]
    for i, (name, *_) in enumerate(rows):
        sf.write(tmp_path / name, voice(0.5, 8_000, 120 + 10 * i, i), 8_000)
    sf.write(tmp_path / "click.wav", voice(0.004, 8_000, 200, 99), 8_000)
    rows.append(("click.wav", "c0", "s0"))
    manifest = write_csv(tmp_path / "m.csv", rows)
    with caplog.at_level(logging.WARNING):
        dm = ManifestDataModule(manifest, cache_dir=tmp_path / "cache", max_bad_fraction=0.1)
        dm.setup()
    assert len(dm.targets) == 20 and "click.wav: 4.0 ms of audio" in caplog.text
    assert "skipped 1 of 21" in caplog.text
    with pytest.raises(DataQualityError, match="1 of 21 recordings unusable"):
        ManifestDataModule(manifest, cache_dir=tmp_path / "cache", max_bad_fraction=0.01).setup()
    dm = ManifestDataModule(manifest, cache_dir=tmp_path / "cache", min_duration_s=0.0)
    dm.setup()
    assert len(dm.targets) == 21


def test_shared_data_passes_the_default_min_duration(shared_data):
    """0.1 s (the default) is below every real file's length: FSDD's shortest is 0.14 s."""
    shortest = min(sf.info(p).duration for p in (shared_data / "fsdd" / "recordings").glob("*.wav"))
    assert shortest > ManifestDataModule("m.csv").min_duration_s == 0.1
    assert np.isclose(shortest, 0.1435, atol=1e-3)
