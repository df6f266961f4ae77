"""Model files: deterministic bytes, hashed as loaded, rebuilt only from qpae's own settings."""

import hashlib

import pytest
import torch

from qpae.checkpoints import build_net, model_bytes, read_model, save_json, save_model
from qpae.models.factory import create_model

META = {
    "model": {"_target_": "qpae.models.factory.create_model", "name": "qpae_small_cnn", "width": 8},
    "data": {"num_classes": 3, "input_shape": [1, 16, 20], "dataset": "x", "split_fingerprint": "f"},
}


def net():
    torch.manual_seed(0)
    return create_model("qpae_small_cnn", num_classes=3, width=8, img_size=(16, 20))


def test_the_same_model_gives_the_same_bytes_whatever_the_file_name(tmp_path):
    a = save_model(tmp_path / "a.pt", net(), META)
    b = save_model(tmp_path / "sub" / "other-name.pt", net(), META)
    assert a == b == hashlib.sha256((tmp_path / "a.pt").read_bytes()).hexdigest()
    assert (tmp_path / "a.pt").read_bytes() == model_bytes(net(), META)
    assert not list(tmp_path.rglob("*.tmp"))


def test_the_hash_is_of_the_bytes_that_were_loaded(tmp_path):
    path = tmp_path / "model.pt"
    digest = save_model(path, net(), META)
    model = read_model(path)
    path.write_bytes(b"replaced after loading")
    assert model.sha256 == digest and model.meta == META


def test_a_failed_json_write_leaves_no_temp_file(tmp_path):
    with pytest.raises(TypeError):
        save_json(tmp_path / "metrics.json", {"x": object()})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "model, message",
    [
        ({"name": "resnet18", "checkpoint_path": "/etc/passwd"}, "checkpoint_path"),
        ({"name": "resnet18", "pretrained_cfg_overlay": {"file": "x"}}, "pretrained_cfg_overlay"),
        ({"name": "resnet50"}, "not one of qpae's"),
        ({"_target_": "os.system", "name": "qpae_small_cnn"}, "os.system"),
        ({"name": "qpae_small_cnn", "width": "8"}, "width must be an integer"),
    ],
)
def test_a_model_file_cannot_steer_timm(model, message):
    with pytest.raises(ValueError, match=message):
        build_net({**META, "model": model})


def test_a_model_file_never_fetches_imagenet_weights_but_retrain_starts_where_pretraining_did(
    monkeypatch,
):
    import timm

    asked = []
    real = timm.create_model
    monkeypatch.setattr(
        timm,
        "create_model",
        lambda name, pretrained=False, **kw: asked.append(pretrained) or real(name, **kw),
    )
    meta = {**META, "model": {"name": "resnet18", "pretrained": True}}
    build_net(meta)  # the file brings its own weights: the hub is never asked
    build_net(meta, initial_weights=True)  # retrain of an ImageNet fine-tune starts from ImageNet
    build_net({**meta, "model": {"name": "resnet18", "pretrained": False}}, initial_weights=True)
    assert asked == [False, True, False]


def test_something_else_is_not_a_model_file(tmp_path):
    path = tmp_path / "x.pt"
    torch.save([1, 2], path)
    with pytest.raises(ValueError, match="not a qpae model file"):
        read_model(path)
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable qpae model file"):
        read_model(path)
