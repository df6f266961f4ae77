"""qpae-unlearn end to end on the synthetic corpus: outputs, receipts, sequences, bad input."""

import json

import pytest
import torch
from hydra.errors import MissingConfigException

from qpae.checkpoints import load_model, sha256_file
from qpae.cli.unlearn import unlearn
from qpae.unlearning.module import NonFiniteLossError

from conftest import SYNTHETIC_8

FAST = ["unlearn.epochs=2", "unlearn.lr=3e-4"]


def config(make_config, pretrained, *overrides):
    return make_config("unlearn", *SYNTHETIC_8, f"input={pretrained}", *FAST, *overrides)


def test_forget_one_speaker_writes_safe_model_metrics_and_receipt(make_config, pretrained, tmp_path):
    digest = sha256_file(pretrained)
    cfg = config(make_config, pretrained, "forget=[0]")
    [report] = unlearn(cfg)
    out = tmp_path / "run"
    before, after = report["before"], report["after"]
    assert before["FA"] >= 50 and after["FA"] == 0.0
    assert after["RA"] >= before["RA"] - 2.0
    assert after["PER"] == pytest.approx(100.0)
    assert set(after) >= {"FA", "RA", "IL", "PER", "FAR", "FRR", "ERB"}
    assert sha256_file(pretrained) == digest  # the input is never modified
    state, meta = load_model(out / "model.pt")  # weights_only=True inside
    assert meta["forgotten_classes"] == [0] and not any("exp_avg" in k for k in state)
    receipt = json.loads((out / "receipt.json").read_text())
    assert receipt["weights"] == {"input_sha256": digest, "output_sha256": sha256_file(out / "model.pt")}
    assert receipt["request"]["forget_class_names"] == ["spk00"]
    assert receipt["metrics"]["after"]["FA"] == 0.0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["timings_s"]["train_s"] > 0 and metrics["method"]["name"] == "qpae"
    assert not list(out.rglob("*.ckpt"))  # no Lightning checkpoint with optimizer state


def test_two_classes_at_once(make_config, pretrained):
    [report] = unlearn(config(make_config, pretrained, "forget=[1,4]"))
    assert report["after"]["FA_class1"] == 0.0 and report["after"]["FA_class4"] == 0.0
    assert report["after"]["RA"] >= report["before"]["RA"] - 2.0


def test_sequential_requests_keep_earlier_classes_forgotten(make_config, pretrained, tmp_path):
    reports = unlearn(config(make_config, pretrained, "requests=[[0],[3],[5]]"))
    forgotten = []
    for report, new in zip(reports, (0, 3, 5), strict=True):
        forgotten.append(new)
        assert report["request"]["previously_forgotten"] == forgotten[:-1]
        for c in forgotten:
            assert report["after"][f"FA_class{c}"] == 0.0, (new, c, report["after"])
    assert reports[-1]["after"]["RA"] >= reports[0]["before"]["RA"] - 2.0
    _, meta = load_model(tmp_path / "run" / "request-03" / "model.pt")
    assert meta["forgotten_classes"] == [0, 3, 5]
    # chaining by hand from an unlearned model: forgetting class 3 again is refused
    again = make_config(
        "unlearn",
        *SYNTHETIC_8,
        f"input={tmp_path}/run/request-03/model.pt",
        "forget=[3]",
        "output_dir=" + str(tmp_path / "again"),
    )
    with pytest.raises(ValueError, match="already forgotten"):
        unlearn(again)


def test_nan_loss_stops_and_writes_nothing(make_config, pretrained, tmp_path, monkeypatch):
    monkeypatch.setattr(
        "qpae.unlearning.methods.qpae.QPAudioEraser.loss",
        lambda self, logits, labels, request, features=None: logits.sum() * float("nan"),
    )
    with pytest.raises(NonFiniteLossError, match="nothing was written"):
        unlearn(config(make_config, pretrained, "forget=[0]"))
    assert not (tmp_path / "run" / "model.pt").exists()
    assert not (tmp_path / "run" / "receipt.json").exists()


@pytest.mark.parametrize(
    "forget, error",
    [("[8]", "out of range"), ("[0,1,2,3,4,5,6,7]", "every class"), ("[nobody]", "unknown class")],
)
def test_bad_requests_fail_before_training(make_config, pretrained, tmp_path, forget, error):
    with pytest.raises(ValueError, match=error):
        unlearn(config(make_config, pretrained, f"forget={forget}"))
    assert not (tmp_path / "run" / "model.pt").exists()


def test_missing_checkpoint_says_which_pretrain_to_run(make_config, tmp_path):
    cfg = make_config("unlearn", *SYNTHETIC_8, f"input={tmp_path}/none.pt")
    with pytest.raises(FileNotFoundError, match="make pretrain DATASET=synthetic_speakers MODEL=small_cnn"):
        unlearn(cfg)


def test_checkpoint_of_other_data_is_refused(make_config, pretrained):
    cfg = make_config(
        "unlearn",
        "dataset=synthetic_speakers",
        "dataset.n_speakers=6",
        "dataset.repetitions=4",
        "model=small_cnn",
        "logger=none",
        f"input={pretrained}",
    )
    with pytest.raises(ValueError, match="has 8 classes but synthetic_speakers has 6"):
        unlearn(cfg)


def test_unknown_method_lists_the_valid_ones(make_config):
    with pytest.raises(MissingConfigException, match="qpae"):
        make_config("unlearn", "method=forgetful")


def test_unlearning_data_comes_from_the_training_split_only(make_config):
    from hydra.utils import instantiate

    cfg = make_config("unlearn", *SYNTHETIC_8)
    dm = instantiate(cfg.dataset)
    dm.setup()
    loader = dm.unlearning_loader([0], "forget+retain", retain_fraction=0.25)
    train = dm.dataset("train")
    assert loader.dataset is not None and len(loader.dataset) == len(train)
    assert torch.equal(loader.dataset.tensors[0], train.tensors[0])
    sampler = loader.sampler
    n_forget = int((train.tensors[1] == 0).sum())
    assert len(sampler) == n_forget + round(0.25 * (len(train) - n_forget))
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(first) != sorted(second)  # a fresh retained subsample each epoch
    labels = train.tensors[1][first]
    assert int((labels == 0).sum()) == n_forget  # every forget sample, every epoch
