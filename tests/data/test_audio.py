import logging
import os
import threading

import numpy as np
import pytest
import soundfile as sf
import torch

from qpae.data.audio import BadAudioError, fit_length, load_mono, windows
from qpae.data.features import FeatureConfig, LogMel


def tone(seconds: float, sr: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_stereo_is_downmixed_and_resampled(tmp_path):
    left, right = tone(0.5, 48_000, 440), tone(0.5, 48_000, 880)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 48_000)
    wave = load_mono(path, 16_000)
    assert wave.ndim == 1 and wave.dtype == np.float32
    assert abs(len(wave) - 8_000) <= 1
    spectrum = np.abs(np.fft.rfft(wave))
    freqs = np.fft.rfftfreq(len(wave), 1 / 16_000)
    peaks = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert peaks == pytest.approx([440, 880], abs=3)  # both channels survive the downmix


def test_flac_and_mp3_decode(tmp_path):
    for ext, fmt in (("flac", "FLAC"), ("mp3", "MP3")):
        path = tmp_path / f"a.{ext}"
        sf.write(path, tone(0.5, 16_000), 16_000, format=fmt)
        assert abs(len(load_mono(path, 16_000)) - 8_000) < 1200  # mp3 adds encoder padding


@pytest.mark.parametrize(
    "write, reason",
    [
        (lambda p: p.write_bytes(b"RIFF\x00\x00garbage-not-audio"), "cannot decode"),
        (lambda p: sf.write(p, np.zeros((0,), np.float32), 16_000), "zero-length"),
        (lambda p: sf.write(p, np.zeros(16_000, np.float32), 16_000), "silent"),
    ],
    ids=["corrupt", "zero-length", "silent"],
)
def test_bad_files_raise_naming_the_file(tmp_path, write, reason):
    path = tmp_path / "bad.wav"
    write(path)
    with pytest.raises(BadAudioError, match=reason) as err:
        load_mono(path, 16_000)
    assert "bad.wav" in str(err.value)


def test_missing_file_is_bad_audio(tmp_path):
    with pytest.raises(BadAudioError, match="cannot decode"):
        load_mono(tmp_path / "nope.wav", 16_000)


def test_fit_length_pads_short_and_crops_long():
    short = np.ones(10, np.float32)
    out = fit_length(short, 16)
    assert len(out) == 16 and out.sum() == 10 and out[0] == 0 and out[-1] == 0
    long = np.arange(20, dtype=np.float32)
    assert fit_length(long, 10).tolist() == list(range(5, 15))


def test_windows_cut_long_utterances():
    wave = np.arange(35, dtype=np.float32)
    parts = windows(wave, 10)
    # 3 full windows; the 5-sample tail is exactly half a window and is dropped
    assert [p[0] for p in parts] == [0, 10, 20] and all(len(p) == 10 for p in parts)
    assert len(windows(wave, 10, max_windows=2)) == 2
    assert len(windows(np.ones(4, np.float32), 10)) == 1


def test_logmel_shape_and_resize():
    waves = torch.from_numpy(np.stack([tone(1.0, 16_000), tone(1.0, 16_000, 1000)]))
    feats = LogMel(FeatureConfig())(waves)
    assert feats.shape == (2, 1, 64, 101)  # 10 ms hop over 1 s
    # a 1 kHz tone puts its energy in higher mel bins than a 440 Hz tone
    assert feats[1, 0].mean(1).argmax() > feats[0, 0].mean(1).argmax()
    resized = LogMel(FeatureConfig(resize=(224, 224)))(waves)
    assert resized.shape == (2, 1, 224, 224)


def test_logmel_of_a_clip_does_not_depend_on_its_batch():
    """The 80 dB floor is per clip: a loud clip in the chunk must not floor the others."""
    rng = np.random.default_rng(0)
    quiet = tone(1.0, 16_000, 300) * 0.01
    quiet[4000:6000] = 0.0  # a pause: the floor decides these frames' values
    others = [tone(1.0, 16_000, f) * a for f, a in ((500, 0.3), (700, 0.05))]
    loud = (1000.0 * rng.standard_normal(16_000)).astype(np.float32)
    logmel = LogMel(FeatureConfig())
    alone = logmel(torch.from_numpy(quiet[None]))[0]
    for chunk in ([quiet, *others], [loud, quiet], [*others, loud, quiet]):
        position = next(i for i, c in enumerate(chunk) if c is quiet)
        batched = logmel(torch.from_numpy(np.stack(chunk)))[position]
        torch.testing.assert_close(batched, alone, atol=1e-3, rtol=0)
    assert float(alone.max() - alone.min()) <= 80.0 + 1e-3  # its own floor, 80 dB below its own peak


def test_loud_clip_is_used_and_warned_of_with_its_peak(tmp_path, caplog):
    path = tmp_path / "int16-scale.wav"
    sf.write(path, tone(0.5, 16_000) * 100, 16_000, subtype="FLOAT")  # peak 30: int16-like scale
    with caplog.at_level(logging.WARNING, logger="qpae.data.audio"):
        wave = load_mono(path, 16_000)
    assert float(np.abs(wave).max()) == pytest.approx(30, rel=1e-3)
    assert "int16-scale.wav" in caplog.text and "peak |sample| = 30" in caplog.text
    caplog.clear()
    sf.write(path, tone(0.5, 16_000), 16_000, subtype="FLOAT")
    with caplog.at_level(logging.WARNING, logger="qpae.data.audio"):
        load_mono(path, 16_000)
    assert caplog.text == ""


def test_clip_shorter_than_min_duration_is_bad_audio(tmp_path):
    path = tmp_path / "blip.wav"
    sf.write(path, tone(0.005, 16_000), 16_000)  # 5 ms
    assert len(load_mono(path, 16_000)) == 80  # no minimum unless asked
    with pytest.raises(BadAudioError, match=r"blip.wav: 5.0 ms of audio, shorter than min_duration_s=0.1"):
        load_mono(path, 16_000, min_duration_s=0.1)


def test_fifo_or_folder_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    outcome = {}

    def load():
        try:
            load_mono(fifo, 16_000)
        except BadAudioError as err:
            outcome["error"] = str(err)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=20)
    if worker.is_alive():  # it opened the FIFO and blocks: a writer releases it, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("load_mono opened a FIFO and blocked")
    assert "pipe.wav: not a regular file" in outcome["error"]
    with pytest.raises(BadAudioError, match="not a regular file"):
        load_mono(tmp_path, 16_000)
