import time

import pytest
import torch

from qpae.models.factory import SUPPORTED, classifier_head, create_model


@pytest.mark.parametrize("name", SUPPORTED)
def test_models_take_spectrograms_and_expose_their_head(name):
    mels = 40 if name == "ge2e" else 64  # GE2E reads its own 40-band front end
    model = create_model(name, num_classes=7, in_chans=1, img_size=(mels, 101))
    x = torch.randn(2, 1, mels, 101).abs()
    assert model(x).shape == (2, 7)
    head = classifier_head(model)
    assert head.out_features == 7
    pre = model.forward_head(model.forward_features(x), pre_logits=True)
    assert pre.shape == (2, head.in_features)
    # the head really is the last layer: logits = head(pre-logits) in eval mode
    model.eval()
    with torch.no_grad():
        pre = model.forward_head(model.forward_features(x), pre_logits=True)
        assert torch.allclose(head(pre), model(x), atol=1e-5)


def test_resized_input_for_vit():
    model = create_model("vit_tiny_patch16_224", num_classes=3, img_size=(224, 224))
    assert model(torch.randn(1, 1, 224, 224)).shape == (1, 3)


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(ValueError, match="resnet18, vit_tiny_patch16_224, qpae_small_cnn"):
        create_model("resnet19", num_classes=3)


def test_pretrained_offline_fails_fast_and_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="model.pretrained=false"):
        create_model("resnet18", num_classes=3, pretrained=True)
    assert time.monotonic() - start < 20  # without HF_HUB_OFFLINE it waits ~46 s for the hub
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_model("qpae_small_cnn", num_classes=3, pretrained=True)
