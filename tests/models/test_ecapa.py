"""ECAPA-TDNN: SpeechBrain's encoder behind timm's head API, an angular-margin head that every
unlearning phase can act on, and settings checked before any training."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from qpae.models.ecapa import AngularHead, margin_logits
from qpae.models.factory import classifier_head, create_model, model_from_settings
from qpae.unlearning.phases import destructive_interference

if importlib.util.find_spec("speechbrain") is None:
    pytest.skip("model=ecapa_tdnn needs `pip install speechbrain`", allow_module_level=True)


def small(num_classes: int = 5):
    torch.manual_seed(0)
    return create_model("ecapa_tdnn", num_classes=num_classes, img_size=(40, 50), channels=16, embedding=32)


def test_the_head_is_a_scaled_cosine_without_bias():
    head = AngularHead(8, 3, scale=30.0, margin=0.2)
    x = torch.randn(4, 8)
    assert head.bias is None
    expected = 30.0 * F.normalize(x, dim=1) @ F.normalize(head.weight, dim=1).T
    torch.testing.assert_close(head(x), expected)
    # a row's length does not matter, its direction does
    with torch.no_grad():
        head.weight[1] *= 7.0
    torch.testing.assert_close(head(x), expected)


def test_the_margin_lowers_only_the_target_logit_by_an_angle():
    head = AngularHead(8, 3, scale=10.0, margin=0.3)
    x, y = torch.randn(6, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    logits = head(x)
    trained = head.with_margin(logits, y)
    target = F.one_hot(y, 3).bool()
    torch.testing.assert_close(trained[~target], logits[~target])
    cos = (logits[target] / 10.0).clamp(-1 + 1e-7, 1 - 1e-7)
    theta = torch.arccos(cos)
    # SpeechBrain's AAM: cos(θ + m) where θ + m < π, its linear extension past that
    fine = theta + 0.3 < math.pi
    torch.testing.assert_close(
        trained[target][fine], 10.0 * torch.cos(theta[fine] + 0.3), atol=1e-4, rtol=1e-4
    )
    assert (trained[target] < logits[target]).all()


def test_margin_logits_leaves_a_plain_linear_head_alone():
    net = create_model("qpae_small_cnn", num_classes=3, img_size=(64, 101))
    logits, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    assert margin_logits(net, logits, y) is logits


def test_ecapa_embeds_and_classifies_through_timms_api():
    net = small().eval()
    x = torch.randn(3, 1, 40, 50)
    with torch.no_grad():
        embedding = net.forward_head(net.forward_features(x), pre_logits=True)
        assert embedding.shape == (3, 32)
        torch.testing.assert_close(classifier_head(net)(embedding), net(x))
    assert isinstance(classifier_head(net), AngularHead)


def test_destructive_interference_erases_a_class_of_the_cosine_head():
    net = small().eval()
    head = classifier_head(net)
    x = torch.randn(8, 1, 40, 50)
    with torch.no_grad():
        w, _ = destructive_interference(head.weight, head.bias, [2])
        before = net(x)
        head.weight.copy_(w)
        after = net(x)
    torch.testing.assert_close(after[:, 2], -before[:, 2])  # cos(π)/√2 flips the row's direction
    torch.testing.assert_close(after[:, [0, 1, 3, 4]], before[:, [0, 1, 3, 4]])


def test_a_model_file_rebuilds_it_and_bad_settings_are_refused():
    settings = {"name": "ecapa_tdnn", "channels": 16, "embedding": 32, "scale": 30.0, "margin": 0.2}
    net = model_from_settings(settings, num_classes=4, in_chans=1, img_size=(40, 50))
    assert net(torch.randn(2, 1, 40, 50)).shape == (2, 4)
    with pytest.raises(ValueError, match="multiple of 8"):
        create_model("ecapa_tdnn", num_classes=4, img_size=(40, 50), channels=12)
    with pytest.raises(ValueError, match="from scratch"):
        create_model("ecapa_tdnn", num_classes=4, img_size=(40, 50), pretrained=True)
    with pytest.raises(ValueError, match="margin"):
        create_model("ecapa_tdnn", num_classes=4, img_size=(40, 50), margin=1.5)
    with pytest.raises(ValueError, match="channels must be an integer"):
        model_from_settings({**settings, "channels": "64"}, num_classes=4, in_chans=1, img_size=(40, 50))
    with pytest.raises(ValueError, match="not qpae model settings"):
        model_from_settings({**settings, "attention": 3}, num_classes=4, in_chans=1, img_size=(40, 50))
    with pytest.raises(ValueError, match=r"\[batch, 1, 40, frames\]"):
        net(torch.randn(2, 1, 64, 50))


def test_building_an_ecapa_leaves_torchs_global_settings_alone():
    """SpeechBrain's import turns TF32 matmuls on and the JIT profiler off unless told not to."""
    code = (
        "import torch\n"
        "before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)\n"
        "from qpae.models.factory import create_model\n"
        "net = create_model('ecapa_tdnn', num_classes=3, img_size=(40, 50), channels=16, embedding=8)\n"
        "net.get_classifier().with_margin(torch.zeros(2, 3), torch.tensor([0, 1]))\n"
        "after = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)\n"
        "assert before == after, (before, after)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
