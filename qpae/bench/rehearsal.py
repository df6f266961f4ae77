"""A rehearsal of ``bench=paper`` on a small machine: the paper's four dataset layouts, written
small from the offline espeak-ng corpora, so that the whole profile (224x224 features, ResNet18 and
ViT-Tiny, every scenario, the audit and the certification) can run end to end before the real
corpora are downloaded. ``bench=paper_rehearsal`` is the profile that reads them.

Run: ``python -m qpae.cli.rehearsal data/rehearsal`` then
``make bench BENCH=paper_rehearsal DATA_DIR=data/rehearsal``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from qpae.data.synthetic_corpus import DIGIT_WORDS, build_accent_corpus, build_speaker_corpus

# the accents the rehearsal's accent_archive holds (the paper's 13 less arabic, korean and
# mandarin, which espeak-ng cannot voice as the corpus needs)
ACCENTS = (
    "dutch",
    "english",
    "french",
    "german",
    "italian",
    "polish",
    "portuguese",
    "russian",
    "spanish",
    "turkish",
)


def _read(manifest: Path) -> list[dict]:
    with manifest.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def write_layouts(
    root: Path, speakers: int = 8, repetitions: int = 2, accent_speakers: int = 3
) -> dict[str, int]:
    """Write ``audiomnist/``, ``speech_commands/``, ``librispeech/`` and ``accent_archive/`` under
    ``root`` in their real layouts; return how many audio files each holds.

    AudioMNIST and Speech Commands get ``speakers`` x 10 digits x ``repetitions`` clips (Speech
    Commands' words are the digits' names); LibriSpeech (train-clean-100) two utterances per
    speaker and repetition, five digits spoken in a row each; the Accent Archive
    ``accent_speakers`` readings of its paragraph per accent of :data:`ACCENTS`, as MP3."""
    root = Path(root)
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        rows = _read(build_speaker_corpus(Path(tmp) / "speakers", speakers, repetitions))
        src = Path(tmp) / "speakers"
        by_speaker: dict[str, list[dict]] = {}
        for r in rows:
            by_speaker.setdefault(r["speaker"], []).append(r)
        names = sorted(by_speaker)

        meta = {}
        for k, spk in enumerate(names, start=1):
            nn = f"{k:02d}"
            meta[nn] = {
                "accent": "german" if k % 2 else "english",
                "gender": "female" if k % 3 else "male",
                "age": "30",
            }
            for r in by_speaker[spk]:
                rep = Path(r["path"]).stem.rsplit("_", 1)[1]
                wave, sr = sf.read(src / r["path"], dtype="float32")
                out = root / "audiomnist" / "data" / nn / f"{r['digit']}_{nn}_{rep}.wav"
                out.parent.mkdir(parents=True, exist_ok=True)
                sf.write(out, wave, sr)
                word = DIGIT_WORDS[int(r["digit"])]
                tag = hashlib.sha1(spk.encode()).hexdigest()[:8]
                out = root / "speech_commands" / word / f"{tag}_nohash_{rep}.wav"
                out.parent.mkdir(parents=True, exist_ok=True)
                sf.write(out, wave, sr)
        (root / "audiomnist" / "data" / "audioMNIST_meta.txt").write_text(json.dumps(meta, indent=1))
        counts["audiomnist"] = counts["speech_commands"] = len(rows)

        n = 0
        for k, spk in enumerate(names):
            reader, chapter = 100 + k, 1000 + k
            folder = root / "librispeech" / "LibriSpeech" / "train-clean-100" / str(reader) / str(chapter)
            folder.mkdir(parents=True, exist_ok=True)
            for rep in range(repetitions):
                parts = [r for r in by_speaker[spk] if Path(r["path"]).stem.endswith(f"_{rep}")]
                parts.sort(key=lambda r: int(r["digit"]))
                # two utterances per repetition (digits 0-4, 5-9): every speaker has at least 3
                # utterances for train, validation and test from 2 repetitions on
                for half in (parts[:5], parts[5:]):
                    waves = [sf.read(src / r["path"], dtype="float32") for r in half]
                    sr = waves[0][1]
                    gap = np.zeros(int(0.15 * sr), dtype=np.float32)
                    speech = np.concatenate([x for w, _ in waves for x in (w, gap)])
                    sf.write(folder / f"{reader}-{chapter}-{n:04d}.flac", speech, sr)
                    n += 1
        counts["librispeech"] = n

        accent_rows = _read(
            build_accent_corpus(Path(tmp) / "accents", accents=ACCENTS, speakers_per_accent=accent_speakers)
        )
        rec_dir = root / "accent_archive" / "recordings"
        rec_dir.mkdir(parents=True, exist_ok=True)
        table, seen = [], {}
        for r in accent_rows:
            seen[r["label"]] = seen.get(r["label"], 0) + 1
            name = f"{r['label']}{seen[r['label']]}"
            wave, sr = sf.read(Path(tmp) / "accents" / r["path"], dtype="float32")
            sf.write(rec_dir / f"{name}.mp3", wave, sr, format="MP3")
            table.append({"filename": name, "native_language": r["label"], "file_missing?": "FALSE"})
        with (root / "accent_archive" / "speakers_all.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["filename", "native_language", "file_missing?"])
            writer.writeheader()
            writer.writerows(table)
        counts["accent_archive"] = len(table)
    return counts
