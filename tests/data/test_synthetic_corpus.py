"""Tests for the espeak-ng wrapper and the synthetic speaker/accent corpora (a few seconds)."""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from qpae.data import espeak
from qpae.data.synthetic_corpus import (
    ACCENT_PARAGRAPH,
    DEFAULT_ACCENTS,
    MAX_SPEAKERS,
    MAX_SPEAKERS_PER_ACCENT,
    _speaker_table,
    accent_text,
    build_accent_corpus,
    build_speaker_corpus,
)

SR = 22050


def _rows(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="") as f:
        return list(csv.DictReader(f))


def _digests(root: Path) -> dict[str, str]:
    """sha256 of every file below root, keyed by relative path."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _mtimes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*")}


def _median_f0(wave: np.ndarray) -> float:
    f0 = librosa.yin(wave, fmin=50, fmax=500, sr=SR)
    return float(np.median(f0))


# --------------------------------------------------------------------------------------------
# espeak wrapper


def test_synthesize_seven_is_plausible_speech():
    wave, sr = espeak.synthesize("seven")
    assert sr == SR
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert 0.2 <= len(wave) / sr <= 2.0
    assert np.abs(wave).max() <= 1.0
    assert np.sqrt(np.mean(wave**2)) > 0.01  # not silent


def test_synthesize_is_a_pure_function_of_its_arguments():
    # espeak-ng carries state between utterances; the wrapper must hide it.
    a, _ = espeak.synthesize("seven", voice="en-US+m3", pitch=40)
    espeak.synthesize("Please call Stella.", voice="de+f2", pitch=90, rate=300)
    b, _ = espeak.synthesize("seven", voice="en-US+m3", pitch=40)
    np.testing.assert_array_equal(a, b)
    many1, _ = espeak.synthesize_many([espeak.SynthRequest("four"), espeak.SynthRequest("nine")])
    many2, _ = espeak.synthesize_many([espeak.SynthRequest("four"), espeak.SynthRequest("nine")])
    for x, y in zip(many1, many2, strict=True):
        np.testing.assert_array_equal(x, y)


def test_pitch_parameter_moves_the_fundamental():
    low, _ = espeak.synthesize("seven nine", voice="en+m1", pitch=20)
    high, _ = espeak.synthesize("seven nine", voice="en+m1", pitch=80)
    f_low, f_high = _median_f0(low), _median_f0(high)
    assert f_high > 1.3 * f_low, (f_low, f_high)


def test_female_variant_is_higher_than_male_variant():
    male, _ = espeak.synthesize("seven nine", voice="en+m1")
    female, _ = espeak.synthesize("seven nine", voice="en+f2")
    assert _median_f0(female) > 1.5 * _median_f0(male)


def test_available_voices_and_variants():
    voices, variants = espeak.available_voices(), espeak.available_variants()
    assert {"en", "en-US", "fr", "de", "es", "ru"} <= set(voices)
    assert {"m1", "f2"} <= set(variants)


@pytest.mark.parametrize("voice", ["xx-nonexistent", "en+nonexistent-variant"])
def test_unknown_voice_raises_listing_valid_ones(voice):
    with pytest.raises(ValueError) as err:
        espeak.synthesize("seven", voice=voice)
    msg = str(err.value)
    assert "nonexistent" in msg
    assert ("en-US" in msg and "fr" in msg) or ("m1" in msg and "f2" in msg)


@pytest.mark.parametrize(
    "kwargs", [{"rate": 20}, {"rate": 1000}, {"pitch": -1}, {"pitch_range": 101}, {"text": " "}]
)
def test_out_of_range_arguments_raise(kwargs):
    args = {"text": "seven", **kwargs}
    with pytest.raises(ValueError):
        espeak.synthesize(**args)


def test_voice_names_are_case_insensitive():
    a, _ = espeak.synthesize("seven", voice="en-us")
    b, _ = espeak.synthesize("seven", voice="EN-US")
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------------
# speaker corpus

N_SPK, N_REP = 3, 2


@pytest.fixture(scope="module")
def speaker_corpora(tmp_path_factory):
    """The same small speaker corpus built twice, into two directories."""
    roots = [tmp_path_factory.mktemp(f"spk{i}") for i in range(2)]
    manifests = [build_speaker_corpus(r, n_speakers=N_SPK, repetitions=N_REP, seed=7) for r in roots]
    return roots, manifests


def test_speaker_corpus_layout_and_manifest(speaker_corpora):
    (root, _), (manifest, _) = speaker_corpora
    assert manifest == root / "manifest.csv"
    rows = _rows(manifest)
    assert list(rows[0]) == ["path", "label", "speaker", "digit"]
    assert len(rows) == N_SPK * 10 * N_REP
    assert len(list((root / "speakers").rglob("*.wav"))) == N_SPK * 10 * N_REP
    speakers = {f"spk{i:02d}" for i in range(N_SPK)}
    assert {r["label"] for r in rows} == speakers
    assert all(r["label"] == r["speaker"] for r in rows)
    assert Counter((r["speaker"], r["digit"]) for r in rows) == {
        (s, str(d)): N_REP for s in speakers for d in range(10)
    }
    for r in rows:
        assert r["path"] == f"speakers/{r['speaker']}/{r['digit']}_{r['speaker']}_" + r["path"][-5:]
    info = sf.info(root / rows[0]["path"])
    assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
    wave, _ = sf.read(root / rows[0]["path"])
    assert 0.2 <= len(wave) / SR <= 2.0 and np.abs(wave).max() > 0.1


def test_repetitions_are_not_copies(speaker_corpora):
    (root, _), _ = speaker_corpora
    d = root / "speakers" / "spk00"
    rep0, rep1 = (d / "3_spk00_0.wav").read_bytes(), (d / "3_spk00_1.wav").read_bytes()
    assert rep0 != rep1


def test_speakers_are_different_voices():
    table = _speaker_table(60, seed=0)
    assert len({(s["voice"], s["pitch"], s["rate"]) for s in table}) == 60
    # Diversity ordering: the first speakers all use different dialect+variant combinations.
    assert len({s["voice"] for s in table[:20]}) == 20
    assert _speaker_table(60, seed=1) != table  # the seed matters


def test_speaker_corpus_is_deterministic(speaker_corpora):
    (root_a, root_b), _ = speaker_corpora
    digests_a, digests_b = _digests(root_a), _digests(root_b)
    assert len(digests_a) == N_SPK * 10 * N_REP + 2  # + manifest.csv + corpus.json
    assert digests_a == digests_b


def test_speaker_corpus_is_idempotent(speaker_corpora):
    (root, _), (manifest, _) = speaker_corpora
    before = _mtimes(root)
    assert build_speaker_corpus(root, n_speakers=N_SPK, repetitions=N_REP, seed=7) == manifest
    assert _mtimes(root) == before


def test_speaker_corpus_rebuilds_on_new_arguments_and_after_interruption(tmp_path):
    build_speaker_corpus(tmp_path, n_speakers=2, repetitions=2)
    first = _digests(tmp_path)
    manifest = build_speaker_corpus(tmp_path, n_speakers=1, repetitions=1)
    assert len(_rows(manifest)) == 10
    assert len(list(tmp_path.rglob("*.wav"))) == 10  # no stale clips from the bigger build
    # A build without corpus.json (interrupted) is redone, not trusted.
    (tmp_path / "corpus.json").unlink()
    build_speaker_corpus(tmp_path, n_speakers=2, repetitions=2)
    assert _digests(tmp_path) == first


def test_too_many_speakers_raises(tmp_path):
    assert MAX_SPEAKERS >= 60
    with pytest.raises(ValueError, match=str(MAX_SPEAKERS)):
        build_speaker_corpus(tmp_path, n_speakers=MAX_SPEAKERS + 1)
    with pytest.raises(ValueError):
        build_speaker_corpus(tmp_path, n_speakers=0)
    assert not (tmp_path / "manifest.csv").exists()


# --------------------------------------------------------------------------------------------
# accent corpus

ACCENTS = ("english", "russian", "spanish")
N_PER_ACCENT = 2


@pytest.fixture(scope="module")
def accent_corpora(tmp_path_factory):
    roots = [tmp_path_factory.mktemp(f"acc{i}") for i in range(2)]
    manifests = [build_accent_corpus(r, accents=ACCENTS, speakers_per_accent=N_PER_ACCENT) for r in roots]
    return roots, manifests


def test_accent_corpus_layout_and_manifest(accent_corpora):
    (root, _), (manifest, _) = accent_corpora
    rows = _rows(manifest)
    assert list(rows[0]) == ["path", "label", "speaker"]
    assert len(rows) == len(ACCENTS) * N_PER_ACCENT
    assert Counter(r["label"] for r in rows) == {a: N_PER_ACCENT for a in ACCENTS}
    assert len({r["speaker"] for r in rows}) == len(rows)
    for r in rows:
        assert r["path"] == f"accents/{r['label']}/{r['speaker']}.wav"
        wave, sr = sf.read(root / r["path"])
        assert sr == SR and len(wave) / sr > 10  # a whole paragraph


def test_accent_corpus_is_deterministic_and_idempotent(accent_corpora):
    (root_a, root_b), (manifest, _) = accent_corpora
    assert _digests(root_a) == _digests(root_b)
    before = _mtimes(root_a)
    assert build_accent_corpus(root_a, accents=ACCENTS, speakers_per_accent=N_PER_ACCENT) == manifest
    assert _mtimes(root_a) == before


def _words_read_as_english(text: str, voice: str) -> int:
    """Words that espeak-ng hands to its English rules ("(en)...(xx)" in the phonemes)."""
    phonemes = espeak.text_to_phonemes(text, voice)
    return sum(len(seg.split()) for seg in re.findall(r"\(en\)(.*?)(?:\(|$)", phonemes))


def test_every_default_accent_really_uses_its_own_language():
    # Non-Latin-script voices (and largely the French one) hand Latin text to the English rules,
    # which would make e.g. "russian" sound English; the corpus must not rely on that.
    assert _words_read_as_english(ACCENT_PARAGRAPH, "ru") > 60
    n_words = len(ACCENT_PARAGRAPH.split())
    for accent in DEFAULT_ACCENTS:
        if accent == "english":
            continue
        voice, text = accent_text(accent)
        assert _words_read_as_english(text, voice) <= 0.15 * n_words, accent
    for accent in ("russian", "french", "spanish", "polish", "portuguese", "turkish", "dutch"):
        voice, text = accent_text(accent)
        assert _words_read_as_english(text, voice) == 0, accent


def test_bad_accent_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match="klingon"):
        build_accent_corpus(tmp_path, accents=("english", "klingon"))
    with pytest.raises(ValueError):
        build_accent_corpus(tmp_path, speakers_per_accent=MAX_SPEAKERS_PER_ACCENT + 1)
    with pytest.raises(ValueError):
        build_accent_corpus(tmp_path, accents=("english", "english"))
