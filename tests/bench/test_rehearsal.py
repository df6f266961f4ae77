"""The rehearsal's layouts are the real datasets' layouts: each loader finds what was written."""

from collections import Counter

from qpae.bench.rehearsal import ACCENTS, write_layouts
from qpae.data.accent_archive import AccentArchiveDataModule
from qpae.data.audiomnist import AudioMNISTDataModule
from qpae.data.librispeech import LibriSpeechDataModule
from qpae.data.speech_commands import SpeechCommandsDataModule


def test_every_loader_reads_the_rehearsal_layout_with_its_classes(tmp_path):
    counts = write_layouts(tmp_path / "data", speakers=3, repetitions=2, accent_speakers=1)
    assert counts == {"audiomnist": 60, "speech_commands": 60, "librispeech": 12, "accent_archive": 10}
    root, cache = tmp_path / "data", tmp_path / "cache"
    found = {
        "audiomnist": AudioMNISTDataModule(root / "audiomnist", cache_dir=cache).find_recordings(),
        "speech_commands": SpeechCommandsDataModule(
            root / "speech_commands", cache_dir=cache
        ).find_recordings(),
        "librispeech": LibriSpeechDataModule(
            root / "librispeech", cache_dir=cache, subset="train-clean-100"
        ).find_recordings(),
        "accent_archive": AccentArchiveDataModule(
            root / "accent_archive", cache_dir=cache, classes=list(ACCENTS)
        ).find_recordings(),
    }
    assert {name: len(recs) for name, recs in found.items()} == counts
    for name in ("audiomnist", "speech_commands", "librispeech"):  # 3 speakers, evenly
        assert sorted(Counter(r.label for r in found[name]).values()) == [counts[name] // 3] * 3, name
    assert sorted({r.label for r in found["accent_archive"]}) == sorted(ACCENTS)
    accents = AudioMNISTDataModule(root / "audiomnist", cache_dir=cache, label="accent").find_recordings()
    assert {r.label for r in accents} == {"german", "english"}
