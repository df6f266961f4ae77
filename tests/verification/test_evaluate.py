"""Verification-mode evaluation end to end on a small corpus: trials, scores, DET curve, refusals."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from test_store_datamodule import module, write_corpus  # noqa: E402

from qpae.models.factory import create_model  # noqa: E402
from qpae.verification.enrolment import EnrolmentError  # noqa: E402
from qpae.verification.evaluate import evaluate  # noqa: E402


@pytest.fixture(scope="module")
def dm(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    return module(write_corpus(root, per=10), root / "cache")


def net(dm, seed=0):
    torch.manual_seed(seed)
    return create_model("qpae_small_cnn", dm.num_classes, img_size=tuple(dm.input_shape[1:]))


def test_every_model_is_scored_on_the_same_trials_with_a_det_curve(dm, tmp_path):
    report = evaluate(
        {"a": net(dm, 0), "b": net(dm, 1)},
        dm,
        enrolled=["ann", "bob", "cy"],
        cohort=["dee"],
        enrol_clips=3,
        nontarget_per_clip=2,
        det_path=tmp_path / "det.png",
    )
    assert set(report["models"]) == {"a", "b"} and report["score_normalisation"] == "none"
    for summary in report["models"].values():
        assert 0.0 <= summary["EER"] <= 100.0
        assert summary["target_trials"] == report["target_trials"] > 0
        assert summary["nontarget_trials"] == report["nontarget_trials"] > 0
    assert (tmp_path / "det.png").stat().st_size > 0


def test_the_same_seed_gives_the_same_figures(dm):
    a = evaluate({"m": net(dm)}, dm, enrol_clips=3, nontarget_per_clip=2, seed=3)
    b = evaluate({"m": net(dm)}, dm, enrol_clips=3, nontarget_per_clip=2, seed=3)
    assert a == b


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"enrolled": ["ann", "zed"]}, "not classes"),
        ({"enrolled": ["ann", "bob"], "cohort": ["bob", "cy"]}, "both enrolled and in the cohort"),
        ({"enrol_clips": 50}, "fewer than enrol_clips=50"),
    ],
)
def test_bad_requests_are_refused(dm, kwargs, match):
    with pytest.raises(EnrolmentError, match=match):
        evaluate({"m": net(dm)}, dm, **kwargs)


def test_the_command_line_needs_a_model_and_says_how(tmp_path):
    import subprocess

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "qpae.cli.verify_eval",
            f"paths.root={tmp_path}",
            "dataset=fsdd",
            f"paths.data={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
    )
    assert done.returncode == 2 and "+models.original=" in done.stderr and "Traceback" not in done.stderr


def test_reenrolment_figures_per_person_and_model(dm):
    report = evaluate(
        {"a": net(dm), "b": net(dm, 1)}, dm, enrol_clips=3, nontarget_per_clip=1, reenrol=["bob"]
    )
    figs = report["reenrolment"]["bob"]
    assert set(figs) == {"a", "b"}
    for f in figs.values():
        assert f["target_trials"] > 0 and f["nontarget_trials"] > 0
        assert f["score_gap"] == pytest.approx(f["target_mean"] - f["nontarget_mean"])
    with pytest.raises(EnrolmentError, match="not classes"):
        evaluate({"a": net(dm)}, dm, reenrol=["zed"])


def test_a_model_of_other_features_is_refused(dm):
    from qpae.data.features import FeatureConfig
    from qpae.unlearning.runner import check_compatible

    meta = {"data": {**dm.describe(), "features": FeatureConfig(n_mels=40, front_end="ge2e_mel").as_dict()}}
    with pytest.raises(ValueError, match="other features"):
        check_compatible(meta, dm, Path("m.pt"))
    check_compatible({"data": dm.describe()}, dm, Path("m.pt"))  # its own features pass
    old = {
        "data": {
            **dm.describe(),
            "features": {k: v for k, v in dm.features.as_dict().items() if k != "n_fft"},
        }
    }
    check_compatible(old, dm, Path("m.pt"))  # a setting a file predates takes its default


def test_compactness_separates_a_tight_speaker_from_a_spread_one():
    from qpae.verification.evaluate import compactness

    rng = np.random.default_rng(0)
    centre = rng.standard_normal(16)
    tight = centre + 0.1 * rng.standard_normal((5, 16))
    spread = rng.standard_normal((5, 16))
    other = -centre + 0.1 * rng.standard_normal((5, 16))
    emb = np.concatenate([tight, spread, other])
    speakers = ["t"] * 5 + ["s"] * 5 + ["o"] * 5
    assert compactness(emb, speakers, "t")["within"] > 0.9
    spread_figures = compactness(emb, speakers, "s")
    assert abs(spread_figures["within"]) < 0.5 and spread_figures["others_within"] > 0.9
