"""RealPaths gives os.path.realpath's answer, with one lstat per file in a known folder."""

import os

from qpae.data.duplicates import RealPaths, find_duplicates


def test_real_paths_agree_with_realpath_through_links_and_dot_dots(tmp_path, monkeypatch):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f.wav").write_bytes(b"x")
    os.symlink(tmp_path / "a" / "b", tmp_path / "lnk")
    os.symlink(tmp_path / "a" / "b" / "f.wav", tmp_path / "a" / "g.wav")
    monkeypatch.chdir(tmp_path / "a")
    real = RealPaths()
    for path in [
        tmp_path / "a" / "b" / "f.wav",
        tmp_path / "lnk" / "f.wav",
        tmp_path / "lnk" / ".." / "b" / "f.wav",  # .. after a link: the link's target's parent
        tmp_path / "a" / "g.wav",  # the file itself a link
        "b/f.wav",
        "g.wav",
        tmp_path / "a" / "missing.wav",
        tmp_path / "lnk" / "..",
    ]:
        assert real(path) == os.path.realpath(path), path


def test_a_file_listed_through_a_link_is_a_duplicate(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.wav").write_bytes(b"one")
    (tmp_path / "d" / "y.wav").write_bytes(b"two")
    os.symlink(tmp_path / "d", tmp_path / "alias")
    found = find_duplicates(
        [tmp_path / "d" / "x.wav", tmp_path / "d" / "y.wav", tmp_path / "alias" / "x.wav"]
    )
    assert found == {2: (0, "same path")}
