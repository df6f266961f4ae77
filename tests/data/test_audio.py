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
