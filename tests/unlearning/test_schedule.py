"""How long unlearning trains: qpae's automatic schedule, the paper's fixed one, and bad settings."""

import json

import pytest
from hydra.errors import InstantiationException

from qpae.pipeline.unlearn import unlearn
from qpae.unlearning.schedule import NotErasedError, Schedule, plateaued

from conftest import SYNTHETIC_8


def config(make_config, pretrained, *overrides):
    return make_config("unlearn", *SYNTHETIC_8, f"input={pretrained}", "forget_index=[2]", *overrides)


def test_a_plateau_is_no_rise_beyond_tolerance_in_patience_checks():
    assert not plateaued([90.0, 90.0, 90.0], patience=3, tolerance=1.0)  # too few checks
    assert plateaued([50.0, 90.0, 90.5, 89.0, 89.9], patience=3, tolerance=1.0)  # noise around 90
    assert plateaued([95.0, 93.0, 92.0, 94.0], patience=3, tolerance=1.0)  # falling: stop too
    assert not plateaued([60.0, 70.0, 80.0, 90.0], patience=3, tolerance=1.0)  # still rising
    assert not plateaued([90.0, 90.0, 92.0, 90.0], patience=3, tolerance=1.0)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"kind": "weekly"}, "kind must be one of auto, epochs"),
        ({"retain_per_forget": 0}, "retain_per_forget must be > 0"),
        ({"check_every": 0}, "check_every must be an integer >= 1"),
        ({"max_steps": 2.5}, "max_steps must be an integer >= 1"),
        ({"tolerance": -1.0}, "tolerance must be >= 0"),
    ],
)
def test_bad_schedule_settings_are_refused(settings, match):
    with pytest.raises(ValueError, match=match):
        Schedule(**settings)


def test_the_automatic_schedule_stops_early_and_says_why(make_config, pretrained, tmp_path):
    # a generous cap: the run must end by convergence, well before it
    [report] = unlearn(config(make_config, pretrained, "schedule=auto", "unlearn.schedule.max_steps=2000"))
    schedule = report["schedule"]
    assert schedule["kind"] == "auto" and schedule["stop_reason"].startswith("converged at step")
    assert schedule["steps"] < 2000 and schedule["checks"][-1]["FA"] == 0.0
    # each epoch: the forget clips plus retain_per_forget (4) retained clips per forget clip
    forget_clips = report["schedule"]["retained_per_epoch"] / 4
    assert forget_clips == int(forget_clips) > 0
    assert report["after"]["FA"] == 0.0 and report["after"]["RA"] >= report["before"]["RA"] - 10.0
    receipt = json.loads((tmp_path / "run" / "request-01" / "receipt.json").read_text())
    assert receipt["method"]["schedule"]["kind"] == "auto"


def test_schedule_paper_runs_the_papers_fixed_epochs(make_config, pretrained):
    [report] = unlearn(
        config(make_config, pretrained, "schedule=paper", "unlearn.epochs=2", "method=qpae_paper")
    )
    assert report["schedule"]["kind"] == "epochs" and "stop_reason" not in report["schedule"]
    train_clips = 8 * 10 * 4 * 0.7  # 8 speakers x 10 digits x 4 repetitions, 70% training
    steps_per_epoch = report["schedule"]["steps"] / 2
    assert steps_per_epoch == pytest.approx(train_clips / 32, abs=2)  # every training clip, each epoch
    assert report["method"]["mixing_form"] == "paper" and report["method"]["lambda_rule"] == "fixed"
    assert report["schedule"]["lambda_applied"] == {"mean": 1.0, "min": 1.0, "max": 1.0}


def test_a_schedule_that_cannot_erase_writes_no_model(make_config, pretrained, tmp_path):
    # fine-tuning on retained clips alone never erases: the cap is reached with FA > 0
    cfg = config(make_config, pretrained, "schedule=auto", "method=finetune", "unlearn.schedule.max_steps=5")
    with pytest.raises(
        NotErasedError, match=r"did not erase spk02 within max_steps=5: FA .*no model was written"
    ):
        unlearn(cfg)
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").rglob("model.pt"))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["unlearn.lambda_=-1"], "lambda_ must be finite and >= 0"),
        (["unlearn.alpha=1.5"], r"alpha must lie in \[0, 1\]"),
        (["unlearn.mixing_form=centered"], "mixing_form must be one of"),
        (["unlearn.lambda_rule=auto"], "lambda_rule must be one of"),
        (["unlearn.schedule.retain_per_forget=50"], "asks for .* retained clips per epoch"),
    ],
)
def test_bad_settings_fail_before_any_training(
    make_config, pretrained, tmp_path, monkeypatch, overrides, match
):
    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr("lightning.Trainer.fit", no_training)
    # a method's own check reaches the command line as its one-line message (qpae.cli.entry)
    with pytest.raises((ValueError, InstantiationException), match=match):
        unlearn(config(make_config, pretrained, "schedule=auto", *overrides))


def test_the_monitor_measures_the_model_as_it_would_be_published():
    # during training the forget row still ties with the others (uniform targets); what must be
    # 0 is FA after phase 4, which the monitor applies out of place through the method
    import torch
    from timm import create_model

    from qpae.unlearning.schedule import ConvergenceMonitor

    torch.manual_seed(0)
    net = create_model("qpae_small_cnn", num_classes=3)
    x = torch.randn(12, 1, 64, 101)
    with torch.no_grad():
        net.get_classifier().weight.zero_()
        net.get_classifier().bias.copy_(torch.tensor([5.0, 0.0, 0.0]))  # everything is class 0
    y = torch.zeros(12, dtype=torch.long)

    def drop_class_0(weight, bias):
        return weight, bias - torch.tensor([10.0, 0.0, 0.0])

    monitor = ConvergenceMonitor(Schedule(), (x, y), (x, y + 1), published_head=drop_class_0)
    assert monitor.measure(net, as_published=False) == (100.0, 0.0)
    assert monitor.measure(net) == (0.0, 100.0)
    assert torch.equal(net.get_classifier().bias, torch.tensor([5.0, 0.0, 0.0]))  # nothing edited
