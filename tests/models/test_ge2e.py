"""The GE2E encoder: Resemblyzer's weights, read tensors-only into qpae's module, give the
package's own embeddings; its front end is the package's; bad settings are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qpae.data.features import FeatureConfig, GE2EMel
from qpae.models import ge2e as ge2e_mod
from qpae.models.factory import create_model, model_from_settings

GE2E_FEATURES = FeatureConfig(
    sample_rate=16_000, n_mels=40, win_ms=25.0, hop_ms=10.0, n_fft=400, front_end="ge2e_mel"
)


def fixed_clip(seconds: float = 1.6, seed: int = 0) -> np.ndarray:
    """A voiced, vowel-like clip: a 120 Hz harmonic series with formant-like weights, and noise."""
    t = np.arange(int(16_000 * seconds)) / 16_000
    rng = np.random.default_rng(seed)
    wave = sum(np.sin(2 * np.pi * 120 * k * t) * np.exp(-((120 * k - 700) ** 2) / 2e5) for k in range(1, 30))
    wave = wave + 0.01 * rng.standard_normal(len(t))
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


@pytest.fixture(scope="module")
def resemblyzer():
    return pytest.importorskip("resemblyzer", reason="the GE2E reference needs `pip install resemblyzer`")


def test_the_weights_load_tensors_only():
    state = ge2e_mod.load_encoder_state()  # torch.load(weights_only=True) inside
    assert set(state) == {k for k in ge2e_mod.GE2E().state_dict() if k.startswith(("lstm.", "linear."))}


def test_the_front_end_is_resemblyzers(resemblyzer):
    from resemblyzer.audio import wav_to_mel_spectrogram

    wav = fixed_clip()
    theirs = wav_to_mel_spectrogram(wav)  # [frames, 40]
    ours = GE2EMel(GE2E_FEATURES)(torch.from_numpy(wav)[None])[0, 0].T.numpy()
    assert ours.shape == theirs.shape
    # float32 STFTs of two libraries: relative 1e-3 of the largest band's power
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3 * theirs.max())


def test_the_embedding_is_resemblyzers_on_a_fixed_clip(resemblyzer):
    from resemblyzer.audio import wav_to_mel_spectrogram

    reference = resemblyzer.VoiceEncoder(device="cpu", verbose=False).eval()
    ours = create_model("ge2e", num_classes=3, pretrained=True, img_size=(40, 161)).eval()
    wav = fixed_clip()
    mels = torch.from_numpy(wav_to_mel_spectrogram(wav))[None]  # the same input to both: [1, frames, 40]
    with torch.no_grad():
        theirs = reference(mels)
        same_input = ours.forward_features(mels.transpose(1, 2)[:, None])
        own_front_end = ours.forward_features(GE2EMel(GE2E_FEATURES)(torch.from_numpy(wav)[None]))
    # the same LSTM on the same input: equal to float32 rounding (1e-5)
    torch.testing.assert_close(same_input, theirs, rtol=0, atol=1e-5)
    # end to end through qpae's own front end: cosine similarity above 0.9999
    assert float(torch.nn.functional.cosine_similarity(own_front_end, theirs)) > 0.9999


def test_the_head_and_a_frozen_encoder():
    net = create_model("ge2e", num_classes=4, pretrained=False, freeze_encoder=True, img_size=(40, 101))
    assert net.get_classifier().out_features == 4
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    x = torch.rand(2, 1, 40, 101)
    emb = net.forward_head(net.forward_features(x), pre_logits=True)
    assert emb.shape == (2, 256) and torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)


def test_features_of_another_front_end_are_refused():
    with pytest.raises(ValueError, match="40 mel bands"):
        create_model("ge2e", num_classes=4, img_size=(64, 101))
    net = create_model("ge2e", num_classes=4)
    with pytest.raises(ValueError, match="mel spectrograms"):
        net(torch.rand(2, 1, 64, 101))
    with pytest.raises(ValueError, match="resize must be null"):
        FeatureConfig(front_end="ge2e_mel", resize=(224, 224))
    with pytest.raises(ValueError, match="front_end"):
        FeatureConfig(front_end="mfcc")


def test_missing_weights_name_the_package_to_install(monkeypatch):
    monkeypatch.setattr(ge2e_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ge2e_mod.WeightsNotFoundError, match="pip install resemblyzer"):
        create_model("ge2e", num_classes=4, pretrained=True)


def test_a_model_file_cannot_smuggle_settings():
    settings = {"_target_": "qpae.models.factory.create_model", "name": "ge2e", "freeze_encoder": "yes"}
    with pytest.raises(ValueError, match="freeze_encoder"):
        model_from_settings(settings, 3, 1, (40, 101))


def test_the_default_front_end_keeps_old_store_keys():
    assert "front_end" not in FeatureConfig().as_dict()
    assert GE2E_FEATURES.as_dict()["front_end"] == "ge2e_mel" and not GE2E_FEATURES.normalised
