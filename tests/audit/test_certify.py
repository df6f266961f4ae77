"""qpae-certify: the null and power tests, the certificate, the ensemble cache and the refusals."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from qpae.audit import certify as cert
from qpae.audit import ensemble as ens
from qpae.audit.epsilon import epsilons
from qpae.checkpoints import load_model, save_model, sha256_file
from qpae.pipeline import certify as pipeline
from qpae.publish import OutputExistsError
from qpae.unlearning.request import ForgetRequest, RequestError

from conftest import SYNTHETIC_8


def measures(conf_forget: np.ndarray, ra: float = 90.0) -> dict:
    n = len(conf_forget)
    return {
        "conf_forget": conf_forget,
        "conf_retain": np.random.default_rng(9).normal(size=(n, 20)),
        "RA": [ra] * n,
        "test_acc": [ra - 10] * n,
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_tiny_ensemble_passes_its_null_test_and_a_method_that_does_not_forget_fails_the_power_test(seed):
    rng = np.random.default_rng(seed)
    retrain = rng.normal(size=(16, 40))
    null = cert.null_test(retrain)
    assert null.n == (8, 8) and np.median(null.lower) == 0.0
    separable = epsilons(rng.normal(loc=15.0, size=(16, 40)), retrain)
    assert cert.verdict(null, separable) == {"valid": True, "reasons": []}
    powerless = epsilons(rng.normal(size=(16, 40)), retrain)
    verdict = cert.verdict(null, powerless)
    assert not verdict["valid"] and "power test" in verdict["reasons"][0]
    shifted = np.concatenate([retrain[:8], retrain[8:] + 30.0])  # two halves of two distributions
    verdict = cert.verdict(cert.null_test(shifted), separable)
    assert not verdict["valid"] and "null test" in verdict["reasons"][0]


def test_the_certificate_holds_every_number_and_the_utility_ratios():
    rng = np.random.default_rng(0)
    retrain = measures(rng.normal(size=(16, 30)), ra=90.0)
    unlearned = measures(rng.normal(size=(16, 30)), ra=81.0)
    power = measures(rng.normal(loc=15.0, size=(16, 30)))
    body, eps = cert.certificate(unlearned, retrain, power)
    assert set(eps) == {"forget", "retain", "null", "power"} and body["n"] == 16
    assert body["utility"] == pytest.approx({"RA": 0.9, "test_acc": 71 / 80})
    assert body["score"] == pytest.approx(body["forget_score"] * 0.9 * 71 / 80)
    assert body["valid"] and body["epsilon"]["forget"]["lower_median"] == 0.0
    assert sum(body["epsilon_histogram"]["counts"]) == 30


def test_fewer_than_three_forget_training_clips_are_refused():
    class Data:
        def forget_set(self, classes, split):
            return torch.utils.data.TensorDataset(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long))

    with pytest.raises(ValueError, match="2 training clips; certifying needs at least 3"):
        ens.certification_clips(Data(), ForgetRequest((0,), 4), 10)


def test_a_member_with_nan_weights_is_refused(pretrained, tmp_path):
    state, meta = load_model(pretrained)
    bad = tmp_path / "nan.pt"

    class Holder(torch.nn.Module):
        def state_dict(self, *args, **kwargs):
            return {
                k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()
            }

    save_model(bad, Holder(), meta)
    clips = ens.Clips(
        (torch.zeros(3, *meta["data"]["input_shape"]), torch.zeros(3, dtype=torch.long)),
        (torch.zeros(3, *meta["data"]["input_shape"]), torch.ones(3, dtype=torch.long)),
        (torch.zeros(3, *meta["data"]["input_shape"]), torch.ones(3, dtype=torch.long)),
        (0,),
    )
    with pytest.raises(FloatingPointError, match="non-finite"):
        ens.member_measures(bad, clips)


def certify_config(make_config, pretrained, *extra):
    return make_config(
        "certify",
        *SYNTHETIC_8[:4],
        "model=small_cnn",
        f"input={pretrained}",
        "wandb=false",
        "certify.launcher=basic",
        "certify.retrain.epochs=2",  # the recipe's 15 epochs per member would be minutes
        "certify.cache=${paths.root}/ensembles",  # this test's own (paths.root is its tmp_path)
        *extra,
    )


@pytest.mark.parametrize(
    ("extra", "error", "match"),
    [
        (["forget_index=[1]", "certify.n=5"], ValueError, "at least 6 models"),
        (["forget_index=[1]", "certify.n=16.5"], ValueError, "whole number"),
        (["forget_index=[1]", "certify.delta=0.9"], ValueError, "certify.delta"),
        (["forget_index=[1]", "certify.jobs=0"], ValueError, "certify.jobs"),
        (["forget_index=[1]", "certify.power.epochs=-1"], Exception, "epochs must be >= 0"),  # via Hydra
        (["forget_index=[1]", "data_seed=1"], ValueError, "different train/test split"),
        (["forget=[nobody]"], RequestError, "nobody"),
        ([], RequestError, "say what was forgotten"),
    ],
)
def test_bad_requests_are_refused_before_any_training(
    make_config, pretrained, monkeypatch, extra, error, match
):
    monkeypatch.setattr(pipeline, "launch_members", lambda *a: pytest.fail("trained despite bad input"))
    with pytest.raises(error, match=match):
        pipeline.certify(certify_config(make_config, pretrained, *extra))


def test_an_ensemble_cache_built_with_other_settings_is_refused(make_config, pretrained):
    cfg = certify_config(make_config, pretrained, "forget_index=[1]")
    planned = pipeline.plan(cfg)
    retrain = planned["ensembles"]["retrain"]
    identity = json.loads((retrain.path / "identity.json").read_text())
    identity["recipe"] = {"edited": True}
    (retrain.path / "identity.json").write_text(json.dumps(identity))
    with pytest.raises(ens.EnsembleMismatchError, match="other settings \\(recipe\\)"):
        pipeline.plan(certify_config(make_config, pretrained, "forget_index=[1]"))


@pytest.fixture(scope="module")
def certified_run(tmp_path_factory, pretrained, feature_cache, synthetic_root):
    """One qpae unlearning run (automatic schedule) of speaker 1: the model to certify."""
    from qpae.pipeline.unlearn import unlearn

    from conftest import compose_config

    root = tmp_path_factory.mktemp("certified")
    cfg = compose_config(
        "unlearn",
        [
            f"paths.cache={feature_cache}",
            f"paths.data={synthetic_root}",
            *SYNTHETIC_8,
            f"input={pretrained}",
            "forget_index=[1]",
            "method=qpae",
            "schedule=auto",
        ],
        root,
    )
    unlearn(cfg)
    return root / "run" / "request-01" / "model.pt"


@pytest.mark.slow
def test_certify_publishes_links_the_receipt_and_reuses_its_ensembles(
    make_config, pretrained, certified_run, monkeypatch
):
    cfg = certify_config(make_config, pretrained, "certify.n=6", f"certify.model={certified_run}")
    body = pipeline.certify(cfg)
    out = Path(cfg.output_dir) / "certificate"
    assert sorted(p.name for p in out.iterdir()) == ["certificate.json", "epsilon_hist.png"]
    saved = json.loads((out / "certificate.json").read_text())
    assert saved["forget_class_names"] == ["spk01"] and saved["n"] == 6
    assert saved["certified_model"]["sha256"] == load_model_sha(certified_run)
    assert saved["valid"] is (not saved["reasons"])  # invalid only with its reasons
    assert saved["epsilon"]["power"]["lower_ceiling"] > 0
    for kind in ens.KINDS:
        assert len(set(saved["ensembles"][kind]["members_sha256"])) == 6, kind  # each member its own
    receipt = json.loads((certified_run.parent / "receipt.json").read_text())
    [link] = receipt["certificates"]
    assert link["sha256"] == sha256_file(out / "certificate.json") and link["valid"] is saved["valid"]
    # a second certification (another output folder) trains nothing: every member is cached
    monkeypatch.setattr(pipeline, "launch_members", lambda *a: pytest.fail("rebuilt a cached member"))
    second = certify_config(make_config, pretrained, "certify.n=6", f"certify.model={certified_run}")
    second.output_dir = str(Path(cfg.output_dir).parent / "second")
    again = pipeline.certify(second)
    for kind in ens.KINDS:
        assert again["ensembles"][kind]["members_sha256"] == body["ensembles"][kind]["members_sha256"]
    # the same output folder is never overwritten
    with pytest.raises(OutputExistsError):
        pipeline.certify(cfg)


def load_model_sha(path: Path) -> str:
    return sha256_file(path)


def test_a_run_of_another_method_is_not_certified_with_this_ones_ensemble(
    make_config, pretrained, certified_run
):
    cfg = certify_config(make_config, pretrained, f"certify.model={certified_run}", "method=qpae_paper")
    with pytest.raises(ValueError, match="other method settings"):
        pipeline.plan(cfg)


def test_a_certified_model_that_does_not_match_its_receipt_is_refused(
    make_config, pretrained, certified_run, tmp_path
):
    copy = tmp_path / "run" / "model.pt"  # another model file beside the run's receipt
    copy.parent.mkdir(parents=True)
    copy.write_bytes(pretrained.read_bytes())
    (copy.parent / "receipt.json").write_text((certified_run.parent / "receipt.json").read_text())
    with pytest.raises(ValueError, match="not the file the receipt was issued for"):
        pipeline.plan(certify_config(make_config, pretrained, f"certify.model={copy}"))


@pytest.mark.parametrize("path", ["/a,b/model.pt", "/it's/model.pt", "/x/${oops}/m.pt", "/a[1]=2/m.pt"])
def test_paths_reach_member_jobs_as_one_literal_value(path):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    override = OverridesParser.create().parse_override("input=" + pipeline.hydra_value(path))
    assert not override.is_sweep_override()
    assert OmegaConf.create({"input": override.value()}).input == path


def test_the_cache_key_follows_the_trainer_and_batch_size(make_config, pretrained):
    keys = set()
    for extra in ([], ["+trainer.gradient_clip_val=1.0"], ["dataset.batch_size=16"]):
        planned = pipeline.plan(certify_config(make_config, pretrained, "forget_index=[1]", *extra))
        keys.add(planned["ensembles"]["retrain"].key)
    assert len(keys) == 3
