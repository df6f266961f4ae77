"""qpae-audit's inputs: model files checked against the data, forget classes by name or index."""

from types import SimpleNamespace

import pytest
from torch import nn

from qpae.audit.inputs import audited_classes, read_checked
from qpae.checkpoints import save_model
from qpae.unlearning.request import RequestError

CLASSES = ["ann", "bob", "cy", "dee"]


def fake_datamodule(name="synthetic_speakers", classes=CLASSES, fingerprint="split-a"):
    return SimpleNamespace(
        name=name,
        class_names=list(classes),
        num_classes=len(classes),
        split_fingerprint=fingerprint,
        split=SimpleNamespace(method="recording"),
    )


def model_file(path, dataset="synthetic_speakers", classes=CLASSES, fingerprint="split-a", forgot=()):
    meta = {
        "data": {
            "dataset": dataset,
            "num_classes": len(classes),
            "class_names": list(classes),
            "split_fingerprint": fingerprint,
        },
        "forgotten_classes": list(forgot),
    }
    save_model(path, nn.Linear(2, len(classes)), meta)
    return path


def test_names_and_indices_resolve_like_qpae_unlearn():
    assert audited_classes(["cy"], None, CLASSES, {}) == (2,)
    assert audited_classes(["dee", "bob"], None, CLASSES, {}) == (1, 3)
    assert audited_classes(None, [0], CLASSES, {}) == (0,)
    with pytest.raises(RequestError, match="unknown class 'eve'.*0=ann"):
        audited_classes(["eve"], None, CLASSES, {})
    with pytest.raises(RequestError, match="forget_index"):  # a number is a name, not an index
        audited_classes([1], None, CLASSES, {})
    with pytest.raises(RequestError, match="only one"):
        audited_classes(["ann"], [0], CLASSES, {})


def test_default_is_what_the_unlearned_models_forgot(caplog):
    metas = {"qpae": {"forgotten_classes": [1]}, "retrain": {"forgotten_classes": [1]}}
    assert audited_classes(None, None, CLASSES, metas) == (1,)
    with pytest.raises(RequestError, match="no forget classes"):
        audited_classes(None, None, CLASSES, {"qpae": {}})
    audited_classes(["cy"], None, CLASSES, metas)
    assert "forgot ['bob'], but the audit is of ['cy']" in caplog.text


def test_every_model_file_is_checked_against_the_data(tmp_path):
    dm = fake_datamodule()
    good = model_file(tmp_path / "good.pt")
    files = read_checked({"original": good, "qpae": good}, dm)
    assert set(files) == {"original", "qpae"} and len(files["qpae"].sha256) == 64
    other_split = model_file(tmp_path / "split.pt", fingerprint="split-b")
    with pytest.raises(ValueError, match="split.pt.*different train/test split"):
        read_checked({"original": good, "retrain": other_split}, dm)
    other_data = model_file(tmp_path / "data.pt", dataset="fsdd")
    with pytest.raises(ValueError, match="data.pt was trained on fsdd"):
        read_checked({"original": good, "qpae": other_data}, dm)
    fewer = model_file(tmp_path / "fewer.pt", classes=CLASSES[:3])
    with pytest.raises(ValueError, match="3 classes"):
        read_checked({"original": fewer}, dm)
