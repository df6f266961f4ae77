"""Deterministic synthetic speech corpora made offline with espeak-ng.

Two corpora, each in its own root directory with a ``manifest.csv`` (paths relative to the root)
and a ``corpus.json`` describing how it was built:

* :func:`build_speaker_corpus` - spoken digits "zero".."nine" by synthetic speakers
  (voice variant x pitch x rate), ``root/speakers/<spk>/<digit>_<spk>_<rep>.wav``.
* :func:`build_accent_corpus` - the Speech Accent Archive paragraph read by espeak-ng voices of
  several languages, ``root/accents/<accent>/<speaker>.wav``.

Builds are deterministic (same arguments -> byte-identical files) and idempotent: a build whose
``corpus.json`` matches the requested configuration is not redone. ``corpus.json`` is written
last, so an interrupted build is never mistaken for a complete one. Use one root per corpus.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import shutil
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from qpae.data import espeak

__all__ = [
    "ACCENT_PARAGRAPH",
    "ACCENT_VOICES",
    "DEFAULT_ACCENTS",
    "DIGIT_WORDS",
    "MAX_SPEAKERS",
    "MAX_SPEAKERS_PER_ACCENT",
    "accent_text",
    "build_accent_corpus",
    "build_speaker_corpus",
]

log = logging.getLogger(__name__)

# Bump when the synthesis recipe changes, so existing corpora are rebuilt instead of reused.
FORMAT_VERSION = 1
SNR_DB = 30.0  # white noise level added to every clip

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# Speaker grid of the digit corpus. The variants are espeak-ng's generic male/female voices (the
# named ones in voices/!v include robots, whispers and croaks); two English dialects double the
# count and add real pronunciation differences between speakers.
SPEAKER_DIALECTS = ("en-US", "en")
SPEAKER_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5")
SPEAKER_PITCHES = (30, 50, 70)
SPEAKER_RATES = (150, 190)
MAX_SPEAKERS = len(SPEAKER_DIALECTS) * len(SPEAKER_VARIANTS) * len(SPEAKER_PITCHES) * len(SPEAKER_RATES)
# Per-repetition jitter: small enough that a speaker stays recognisable.
PITCH_JITTER = 4  # +- espeak pitch units (0-100 scale)
RATE_JITTER = 0.05  # +- fraction of the rate
RANGE_JITTER = 5  # +- espeak pitch-range units around the default 50

# Accent grid: the accent is the voice's language, speakers vary in variant, pitch and rate.
ACCENT_PITCHES = (35, 50, 65)
ACCENT_RATES = (140, 160, 180)
MAX_SPEAKERS_PER_ACCENT = len(SPEAKER_VARIANTS) * len(ACCENT_PITCHES) * len(ACCENT_RATES)

ACCENT_PARAGRAPH = (
    "Please call Stella. Ask her to bring these things with her from the store: Six spoons of "
    "fresh snow peas, five thick slabs of blue cheese, and maybe a snack for her brother Bob. "
    "We also need a small plastic snake and a big toy frog for the kids. She can scoop these "
    "things into three red bags, and we will go meet her Wednesday at the train station."
)

# Respellings. espeak-ng voices for non-Latin scripts do not apply their own rules to Latin text:
# they hand it to the English rules, so "russian" would sound English. The French dictionary
# does the same for 42 of the 69 words (it knows them as English loanwords). These two accents
# therefore read a respelling of the paragraph in their own orthography - how a speaker of the
# language would sound the English words out ("these things" -> "зиз сингз" / "zise sinngz").
_RUSSIAN_RESPELLING = (
    "Плиз кол Стэлла. Аск хё ту бринг зиз сингз виз хё фром зе стор: Сикс спунз оф фрэш сноу "
    "пиз, файв сик слэбз оф блу чиз, энд мэйби э снэк фор хё бразер Боб. Ви олсоу нид э смол "
    "пластик снэйк энд э биг той фрог фор зе кидз. Ши кэн скуп зиз сингз инту сри рэд бэгз, "
    "энд ви вил гоу мит хё Уэнсдэй эт зе трэйн стэйшн."
)
_FRENCH_RESPELLING = (
    "Plise col Stella. Asque heur tou brinngue zise sinngz ouiz heur frome ze store : Sixe "
    "spounes ove frèche sno pise, faïve sic slabes ove blou tchise, ènde mébi e snaque for heur "
    "brozeur Bob. Oui olso nide e smol plastique snéque ènde e bigue toï frogue for ze kidze. "
    "Chi quène scoupe zise sinngz innetou sri rède bagues, ènde oui ouile go mite heur Ouènnzdé "
    "ate ze traine stéchonne."
)


@dataclass(frozen=True)
class _Accent:
    voice: str
    text: str = ACCENT_PARAGRAPH


# Only languages whose voice reads (almost all of) the paragraph with its own rules; check with
# espeak.text_to_phonemes, which marks English stretches with "(en)". German (9 of 69 words),
# Swedish and Italian still send a few common words ("the", "with", "please") to the English
# rules. European Portuguese does too, the Brazilian voice does not, so it is used.
ACCENT_VOICES: dict[str, _Accent] = {
    "english": _Accent("en-US"),
    "french": _Accent("fr", _FRENCH_RESPELLING),
    "german": _Accent("de"),
    "spanish": _Accent("es"),
    "italian": _Accent("it"),
    "polish": _Accent("pl"),
    "portuguese": _Accent("pt-BR"),
    "russian": _Accent("ru", _RUSSIAN_RESPELLING),
    "turkish": _Accent("tr"),
    "dutch": _Accent("nl"),
    "swedish": _Accent("sv"),
    "czech": _Accent("cs"),
    "hungarian": _Accent("hu"),
    "finnish": _Accent("fi"),
    "romanian": _Accent("ro"),
    "indonesian": _Accent("id"),
    "swahili": _Accent("sw"),
    "croatian": _Accent("hr"),
    "norwegian": _Accent("nb"),
    "catalan": _Accent("ca"),
}

DEFAULT_ACCENTS = (
    "english", "french", "german", "spanish", "italian",
    "polish", "portuguese", "russian", "turkish", "dutch",
)  # fmt: skip


def accent_text(accent: str) -> tuple[str, str]:
    """``(voice, text)`` used for ``accent``; raises ``ValueError`` for unknown accents."""
    if accent not in ACCENT_VOICES:
        raise ValueError(f"unknown accent {accent!r}; known accents: {', '.join(ACCENT_VOICES)}")
    a = ACCENT_VOICES[accent]
    return a.voice, a.text


# ----------------------------------------------------------------------------------------------
# Shared helpers


def _spread_grid(
    cells: list[tuple[Any, ...]], n_timbre: int, rng: np.random.Generator
) -> list[tuple[Any, ...]]:
    """Order grid cells so that any prefix is as varied as possible.

    Cells are grouped by "timbre" (their first ``n_timbre`` fields: dialect and/or variant),
    each group and the group order are shuffled, and the groups are then dealt round-robin: the
    first len(groups) picks all sound different, so small corpora get maximally different voices
    rather than a random clump that differs only in pitch or rate.
    """
    groups: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for cell in cells:
        groups.setdefault(cell[:n_timbre], []).append(cell)
    order = [list(groups)[i] for i in rng.permutation(len(groups))]
    shuffled = {k: [groups[k][i] for i in rng.permutation(len(groups[k]))] for k in order}
    out: list[tuple[Any, ...]] = []
    for r in range(max(len(g) for g in shuffled.values())):
        out.extend(shuffled[k][r] for k in order if r < len(shuffled[k]))
    return out


def _add_noise(wave: np.ndarray, rng: np.random.Generator, snr_db: float = SNR_DB) -> np.ndarray:
    """Add white noise at ``snr_db`` relative to the clip's mean power; return int16 PCM."""
    x = wave.astype(np.float64)
    power = float(np.mean(x**2)) if x.size else 0.0
    noise = rng.standard_normal(x.size) * np.sqrt(power / 10 ** (snr_db / 10))
    # Quantise ourselves rather than via libsndfile so the exact bytes are under our control.
    return np.clip(np.round((x + noise) * 32767.0), -32768, 32767).astype(np.int16)


def _write_wav(path: Path, pcm: np.ndarray, sample_rate: int) -> None:
    # Encoded in memory: writing to a path makes libsndfile sync the file on close, which
    # costs more than synthesising the clip.
    buf = io.BytesIO()
    sf.write(buf, pcm, sample_rate, subtype="PCM_16", format="WAV")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def _fingerprint(kind: str, config: dict[str, Any], recipe: Any) -> dict[str, Any]:
    """Everything that determines the corpus bytes; a stored copy that differs forces a rebuild.

    ``recipe`` holds the derived settings (speaker table, texts, jitter and noise constants), so
    editing a module constant invalidates old corpora without remembering to bump FORMAT_VERSION.
    """
    blob = json.dumps(recipe, sort_keys=True, ensure_ascii=False).encode()
    return {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": config,
        "recipe_sha256": hashlib.sha256(blob).hexdigest(),
        # A different espeak-ng build renders different samples.
        "espeakng_loader": importlib.metadata.version("espeakng-loader"),
    }


def _is_complete(root: Path, fingerprint: dict[str, Any]) -> bool:
    """True if ``root`` holds a finished build with this fingerprint and all its files."""
    meta_path, manifest = root / "corpus.json", root / "manifest.csv"
    if not (meta_path.is_file() and manifest.is_file()):
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if meta.get("fingerprint") != fingerprint:
        return False
    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return len(rows) == meta.get("n_clips") and all((root / r["path"]).is_file() for r in rows)


def _prepare_root(root: Path, kind: str, subdir: str) -> None:
    """Invalidate any previous build in ``root`` before writing a new one."""
    meta_path = root / "corpus.json"
    if meta_path.is_file():
        try:
            old_kind = json.loads(meta_path.read_text()).get("fingerprint", {}).get("kind")
        except (OSError, json.JSONDecodeError):
            old_kind = None
        if old_kind is not None and old_kind != kind:
            raise ValueError(
                f"{root} already holds a {old_kind!r} corpus; build the {kind!r} corpus in "
                "a separate directory"
            )
        # Removed first: from here until the new one is written, the root reads as incomplete.
        meta_path.unlink()
    # Stale clips of an earlier configuration (e.g. more speakers) must not linger.
    shutil.rmtree(root / subdir, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)


def _finish(
    root: Path,
    rows: list[dict[str, Any]],
    columns: Sequence[str],
    meta: dict[str, Any],
) -> Path:
    """Write manifest.csv, then corpus.json (last, atomically) and return the manifest path."""
    manifest = root / "manifest.csv"
    tmp = manifest.with_name("manifest.csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, manifest)
    meta_tmp = root / "corpus.json.tmp"
    meta_tmp.write_text(json.dumps({**meta, "n_clips": len(rows)}, indent=2, ensure_ascii=False))
    os.replace(meta_tmp, root / "corpus.json")
    return manifest


# ----------------------------------------------------------------------------------------------
# Speaker (digit) corpus


def _speaker_table(n_speakers: int, seed: int) -> list[dict[str, Any]]:
    """The first ``n_speakers`` speakers of the seeded, diversity-ordered speaker grid."""
    if not 1 <= n_speakers <= MAX_SPEAKERS:
        raise ValueError(f"n_speakers must be in [1, {MAX_SPEAKERS}] (MAX_SPEAKERS), got {n_speakers}")
    cells = [
        (d, v, p, r)
        for d in SPEAKER_DIALECTS
        for v in SPEAKER_VARIANTS
        for p in SPEAKER_PITCHES
        for r in SPEAKER_RATES
    ]
    ordered = _spread_grid(cells, n_timbre=2, rng=np.random.default_rng([seed, 0x5BE]))
    width = max(2, len(str(n_speakers - 1)))
    return [
        {"speaker": f"spk{i:0{width}d}", "voice": f"{d}+{v}", "pitch": p, "rate": r}
        for i, (d, v, p, r) in enumerate(ordered[:n_speakers])
    ]


def build_speaker_corpus(root: Path, n_speakers: int = 12, repetitions: int = 5, seed: int = 0) -> Path:
    """Build (or reuse) the spoken-digit speaker corpus and return its ``manifest.csv`` path.

    Each of ``n_speakers`` synthetic speakers (an English dialect + voice variant + pitch + rate,
    chosen deterministically from ``seed``; at most :data:`MAX_SPEAKERS`) says "zero".."nine"
    ``repetitions`` times. Repetitions differ by a seeded jitter of pitch, rate and pitch range
    and by seeded white noise at ~30 dB SNR. Files: ``root/speakers/<spk>/<digit>_<spk>_<rep>.wav``
    (16-bit PCM, 22050 Hz); manifest columns ``path,label,speaker,digit`` with label = speaker.

    Raises:
        ValueError: ``n_speakers`` outside [1, MAX_SPEAKERS] or ``repetitions`` < 1.
    """
    root = Path(root)
    speakers = _speaker_table(n_speakers, seed)
    if repetitions < 1:
        raise ValueError(f"repetitions must be >= 1, got {repetitions}")
    config = {"n_speakers": n_speakers, "repetitions": repetitions, "seed": seed}
    recipe = {
        "speakers": speakers,
        "words": DIGIT_WORDS,
        "jitter": [PITCH_JITTER, RATE_JITTER, RANGE_JITTER],
        "snr_db": SNR_DB,
    }
    fingerprint = _fingerprint("speaker", config, recipe)
    manifest = root / "manifest.csv"
    if _is_complete(root, fingerprint):
        log.debug("speaker corpus in %s is up to date; not rebuilding", root)
        return manifest

    t0 = time.perf_counter()
    _prepare_root(root, "speaker", "speakers")
    rows: list[dict[str, Any]] = []
    sample_rate = 0
    for k, spk in enumerate(speakers):
        # One engine reset per speaker: each speaker's clips depend only on its own settings,
        # so a corpus with more speakers shares identical files with a smaller one.
        requests, rngs = [], []
        for digit, word in enumerate(DIGIT_WORDS):
            for rep in range(repetitions):
                rng = np.random.default_rng([seed, k, digit, rep])
                pitch = int(np.clip(spk["pitch"] + rng.integers(-PITCH_JITTER, PITCH_JITTER + 1), 0, 100))
                rate = int(round(spk["rate"] * (1 + rng.uniform(-RATE_JITTER, RATE_JITTER))))
                prange = 50 + int(rng.integers(-RANGE_JITTER, RANGE_JITTER + 1))
                requests.append(espeak.SynthRequest(word, spk["voice"], pitch, rate, prange))
                rngs.append((digit, rep, rng))
        waves, sample_rate = espeak.synthesize_many(requests)
        sid = spk["speaker"]
        for wave, (digit, rep, rng) in zip(waves, rngs, strict=True):
            rel = Path("speakers") / sid / f"{digit}_{sid}_{rep}.wav"
            _write_wav(root / rel, _add_noise(wave, rng), sample_rate)
            rows.append({"path": rel.as_posix(), "label": sid, "speaker": sid, "digit": digit})

    meta = {
        "fingerprint": fingerprint,
        "sample_rate": sample_rate,
        "speakers": {s["speaker"]: {k: s[k] for k in ("voice", "pitch", "rate")} for s in speakers},
    }
    manifest = _finish(root, rows, ("path", "label", "speaker", "digit"), meta)
    dt = time.perf_counter() - t0
    log.info(
        "speaker corpus: wrote %d clips (%d speakers x 10 digits x %d reps) to %s in %.1f s "
        "(%.0f clips/s)", len(rows), n_speakers, repetitions, root, dt, len(rows) / dt,
    )  # fmt: skip
    return manifest


# ----------------------------------------------------------------------------------------------
# Accent corpus


def _accent_speakers(accent: str, n: int, seed: int) -> list[dict[str, Any]]:
    cells = [(v, p, r) for v in SPEAKER_VARIANTS for p in ACCENT_PITCHES for r in ACCENT_RATES]
    # Keyed on the accent's name, not its position, so reordering `accents` changes nothing.
    rng = np.random.default_rng([seed, zlib.crc32(accent.encode())])
    voice, _ = accent_text(accent)
    return [
        {"speaker": f"{accent}_{i:02d}", "voice": f"{voice}+{v}", "pitch": p, "rate": r}
        for i, (v, p, r) in enumerate(_spread_grid(cells, n_timbre=1, rng=rng)[:n])
    ]


def build_accent_corpus(
    root: Path,
    accents: Sequence[str] = DEFAULT_ACCENTS,
    speakers_per_accent: int = 4,
    seed: int = 0,
) -> Path:
    """Build (or reuse) the accent corpus and return its ``manifest.csv`` path.

    Every accent (a key of :data:`ACCENT_VOICES`, mapped to an espeak-ng language voice) reads
    the Speech Accent Archive paragraph with ``speakers_per_accent`` speakers that differ in
    voice variant, pitch and rate (seeded; at most :data:`MAX_SPEAKERS_PER_ACCENT`). Seeded
    white noise at ~30 dB SNR is added as in the speaker corpus. Files:
    ``root/accents/<accent>/<speaker>.wav``; manifest columns ``path,label,speaker`` with
    label = accent name and speaker = ``<accent>_<nn>``.

    Raises:
        ValueError: unknown or repeated accents, or ``speakers_per_accent`` out of range.
    """
    root = Path(root)
    accents = list(accents)
    for a in accents:
        accent_text(a)  # raises on unknown accents, listing the known ones
    if len(set(accents)) != len(accents) or not accents:
        raise ValueError(f"accents must be a non-empty list without repeats, got {accents}")
    if not 1 <= speakers_per_accent <= MAX_SPEAKERS_PER_ACCENT:
        raise ValueError(
            f"speakers_per_accent must be in [1, {MAX_SPEAKERS_PER_ACCENT}], got {speakers_per_accent}"
        )
    config = {"accents": accents, "speakers_per_accent": speakers_per_accent, "seed": seed}
    table = {a: _accent_speakers(a, speakers_per_accent, seed) for a in accents}
    recipe = {"texts": {a: accent_text(a)[1] for a in accents}, "speakers": table, "snr_db": SNR_DB}
    fingerprint = _fingerprint("accent", config, recipe)
    manifest = root / "manifest.csv"
    if _is_complete(root, fingerprint):
        log.debug("accent corpus in %s is up to date; not rebuilding", root)
        return manifest

    t0 = time.perf_counter()
    _prepare_root(root, "accent", "accents")
    rows: list[dict[str, Any]] = []
    speakers_meta: dict[str, dict[str, Any]] = {}
    sample_rate = 0
    for accent in accents:
        _, text = accent_text(accent)
        speakers = table[accent]
        requests = [espeak.SynthRequest(text, s["voice"], s["pitch"], s["rate"]) for s in speakers]
        waves, sample_rate = espeak.synthesize_many(requests)  # one engine reset per accent
        for spk, wave in zip(speakers, waves, strict=True):
            sid = spk["speaker"]
            rng = np.random.default_rng([seed, zlib.crc32(sid.encode())])
            rel = Path("accents") / accent / f"{sid}.wav"
            _write_wav(root / rel, _add_noise(wave, rng), sample_rate)
            rows.append({"path": rel.as_posix(), "label": accent, "speaker": sid})
            speakers_meta[sid] = {k: spk[k] for k in ("voice", "pitch", "rate")}

    meta = {
        "fingerprint": fingerprint,
        "sample_rate": sample_rate,
        "texts": {a: accent_text(a)[1] for a in accents},
        "speakers": speakers_meta,
    }
    manifest = _finish(root, rows, ("path", "label", "speaker"), meta)
    dt = time.perf_counter() - t0
    log.info(
        "accent corpus: wrote %d clips (%d accents x %d speakers) to %s in %.1f s",
        len(rows), len(accents), speakers_per_accent, root, dt,
    )  # fmt: skip
    return manifest
