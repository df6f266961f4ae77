"""qpae-unlearn end to end on the synthetic corpus: outputs, receipts, sequences, bad input."""

import json
import os
import subprocess
import sys

import pytest
import torch
from hydra.errors import MissingConfigException

from qpae.checkpoints import load_model, sha256_file
from qpae.pipeline.unlearn import unlearn
from qpae.publish import OutputExistsError
from qpae.unlearning.module import NonFiniteLossError
from qpae.unlearning.receipt import verify_receipt
from qpae.unlearning.request import RequestError

from conftest import SYNTHETIC_8

FAST = ["unlearn.epochs=2", "unlearn.lr=3e-4"]


def config(make_config, pretrained, *overrides):
    return make_config("unlearn", *SYNTHETIC_8, f"input={pretrained}", *FAST, *overrides)


def test_forget_one_speaker_writes_safe_model_metrics_and_receipt(make_config, pretrained, tmp_path, caplog):
    digest = sha256_file(pretrained)
    cfg = config(make_config, pretrained, "forget=[spk00]")
    with caplog.at_level("INFO"):
        [report] = unlearn(cfg)
    # the user is told which copies still hold the person's data (where the outputs went, and the
    # next commands, are the command line's to print: tests/cli/test_follow_on.py)
    assert "feature store holds their log-mel features (purge=false" in caplog.text
    assert "Lightning checkpoints" in caplog.text and str(pretrained) in caplog.text
    out = tmp_path / "run" / "request-01"
    before, after = report["before"], report["after"]
    assert before["FA"] >= 50 and after["FA"] == 0.0
    assert after["RA"] >= before["RA"] - 5.0  # seeds 0-3: -1.8 to +1.8 points
    assert after["PER"] == pytest.approx(100.0)
    assert set(after) >= {"FA", "RA", "IL", "PER", "FAR", "FRR", "ERB", "ERB_paper"}
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
    assert not [p for p in (tmp_path / "run").rglob("*") if ".staging-" in p.name or p.suffix == ".tmp"]


def test_two_classes_at_once(make_config, pretrained):
    # Measured with seeds 0-3 (pretraining and unlearning): FA 0 for both classes every time, RA
    # after 89.6-95.8% (before 87.5-95.8%; chance 12.5%), RA moved by -0.0 to +4.2 points; other
    # CPUs reproduce other numbers (one saw -4.2). The bounds: far above chance, at most 15 lost.
    [report] = unlearn(config(make_config, pretrained, "forget_index=[1,4]"))
    after, before = report["after"], report["before"]
    assert after["FA_class1"] == 0.0 and after["FA_class4"] == 0.0
    assert after["RA"] >= 4 * 12.5
    assert after["RA"] >= before["RA"] - 15.0
    assert report["request"]["forget_class_names"] == ["spk01", "spk04"]


def test_sequential_requests_keep_earlier_classes_forgotten(make_config, pretrained, tmp_path, caplog):
    with caplog.at_level("INFO"):
        reports = unlearn(config(make_config, pretrained, "requests=[[spk00],[spk03],[spk05]]"))
    # the intermediate models still recognise what later requests forgot: the user is told
    assert f"{tmp_path / 'run' / 'request-02' / 'model.pt'}: this model still recognises" in caplog.text
    forgotten = []
    for report, new in zip(reports, (0, 3, 5), strict=True):
        forgotten.append(new)
        assert report["request"]["previously_forgotten"] == forgotten[:-1]
        for c in forgotten:
            assert report["after"][f"FA_class{c}"] == 0.0, (new, c, report["after"])
    # measured with seeds 0-3: the third request ends 0.4-6.1 points below the original's RA
    assert reports[-1]["after"]["RA"] >= reports[0]["before"]["RA"] - 15.0
    _, meta = load_model(tmp_path / "run" / "request-03" / "model.pt")
    assert meta["forgotten_classes"] == [0, 3, 5]
    # chaining by hand from an unlearned model: forgetting class 3 again is refused
    again = make_config(
        "unlearn",
        *SYNTHETIC_8,
        f"input={tmp_path}/run/request-03/model.pt",
        "forget=[spk03]",
        "output_dir=" + str(tmp_path / "again"),
    )
    with pytest.raises(ValueError, match="already forgotten"):
        unlearn(again)


def test_a_bad_request_anywhere_in_a_sequence_fails_before_the_first(make_config, pretrained, tmp_path):
    with pytest.raises(RequestError, match="request 2 of 2.*out of range"):
        unlearn(config(make_config, pretrained, "requests_index=[[0],[99]]"))
    assert not (tmp_path / "run" / "request-01").exists()


def test_nan_loss_stops_and_writes_nothing(make_config, pretrained, tmp_path, monkeypatch):
    monkeypatch.setattr(
        "qpae.unlearning.methods.qpae.QPAudioEraser.loss",
        lambda self, logits, labels, request, features=None: logits.sum() * float("nan"),
    )
    with pytest.raises(NonFiniteLossError, match="nothing was written"):
        unlearn(config(make_config, pretrained, "forget_index=[0]"))
    assert not (tmp_path / "run" / "request-01").exists()
    assert not list((tmp_path / "run").glob(".request-01.staging-*"))


@pytest.mark.parametrize(
    "forget, error",
    [
        ("forget_index=[8]", "out of range"),
        ("forget_index=[0,1,2,3,4,5,6,7]", "every class"),
        ("forget=[nobody]", "unknown class 'nobody'"),
        ("forget=[0]", r"unknown class '0'.*forget_index=\[0\] \(FORGET_INDEX=0"),
        ("forget=[1.5]", "must be text, got the number 1.5"),
        ("forget=[true]", "must be text, got the boolean True"),
        ("requests=[]", "requests is empty"),
        ("forget=0", r"unknown class '0'"),
        ("forget=[spk01,spk01]", "same class twice"),
    ],
)
def test_bad_requests_fail_before_training(make_config, pretrained, tmp_path, forget, error):
    with pytest.raises(ValueError, match=error):
        unlearn(config(make_config, pretrained, forget))
    assert not (tmp_path / "run" / "request-01").exists()


def test_a_name_without_brackets_is_that_one_name(make_config, pretrained, tmp_path):
    [report] = unlearn(config(make_config, pretrained, "forget=spk01", "unlearn.epochs=1"))
    assert report["request"]["forget_class_names"] == ["spk01"]


def test_nothing_to_forget_is_an_error_not_a_default(make_config, pretrained):
    with pytest.raises(RequestError, match="nothing to forget"):
        unlearn(config(make_config, pretrained))


def test_missing_checkpoint_says_which_pretrain_to_run(make_config, tmp_path):
    cfg = make_config("unlearn", *SYNTHETIC_8, f"input={tmp_path}/none.pt", "forget_index=[0]")
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
        "forget_index=[0]",
    )
    with pytest.raises(ValueError, match="has 8 classes but synthetic_speakers has 6"):
        unlearn(cfg)


def test_unknown_method_lists_the_valid_ones(make_config):
    with pytest.raises(MissingConfigException, match="qpae"):
        make_config("unlearn", "method=forgetful")


# --- artefacts that match their receipts -------------------------------------------------------


def test_a_folder_with_another_runs_outputs_is_refused(make_config, pretrained, tmp_path):
    first = tmp_path / "run" / "request-01"
    unlearn(config(make_config, pretrained, "forget=[spk00]", "unlearn.epochs=1"))
    receipt = (first / "receipt.json").read_bytes()
    with pytest.raises(OutputExistsError, match="another run's outputs"):
        unlearn(config(make_config, pretrained, "forget=[spk01]", "unlearn.epochs=1"))
    assert (first / "receipt.json").read_bytes() == receipt
    # the input inside the output folder: refused, before any work
    with pytest.raises(OutputExistsError):
        unlearn(
            config(
                make_config,
                pretrained,
                f"input={first}/model.pt",
                f"output_dir={first.parent}",
                "forget=[spk01]",
            )
        )


def test_every_run_gets_its_own_folder_and_all_processes_of_a_run_share_it():
    from qpae.pipeline.config import run_id

    code = "from qpae.pipeline.config import run_id; print(run_id())"
    clean = {
        k: v for k, v in os.environ.items() if k not in ("QPAE_RUN_ID", "TORCHELASTIC_RUN_ID", "SLURM_JOB_ID")
    }

    def id_in(**env) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env={**clean, **env}
        )
        return proc.stdout.strip()

    assert id_in() != id_in()  # two runs in the same second: two folders
    assert id_in(TORCHELASTIC_RUN_ID="abc") == id_in(TORCHELASTIC_RUN_ID="abc") == "torchrun-abc"
    assert id_in(SLURM_JOB_ID="7", SLURM_STEP_ID="1") == "slurm-7-1"
    assert id_in(QPAE_RUN_ID="mine") == "mine"
    assert run_id() == run_id()  # fixed within a process


def test_the_receipt_hashes_the_bytes_that_were_used(make_config, pretrained, tmp_path, monkeypatch):
    import shutil

    source = tmp_path / "input.pt"
    shutil.copy(pretrained, source)
    digest = sha256_file(source)
    from qpae.unlearning.methods.qpae import QPAudioEraser

    original = QPAudioEraser.on_fit_start

    def swap_input_mid_run(self, *args):
        source.write_bytes(b"not the model that was loaded")
        return original(self, *args)

    monkeypatch.setattr(QPAudioEraser, "on_fit_start", swap_input_mid_run)
    unlearn(config(make_config, pretrained, f"input={source}", "forget=[spk02]", "unlearn.epochs=1"))
    receipt = json.loads((tmp_path / "run" / "request-01" / "receipt.json").read_text())
    assert receipt["weights"]["input_sha256"] == digest


def test_the_same_request_gives_byte_identical_models(make_config, pretrained, tmp_path):
    outs = []
    for k in range(2):
        out = tmp_path / f"out{k}"
        unlearn(config(make_config, pretrained, "forget=[spk02]", "unlearn.epochs=1", f"output_dir={out}"))
        outs.append(out / "request-01" / "model.pt")
    assert outs[0].read_bytes() == outs[1].read_bytes()


def test_verify_receipt_accepts_the_model_and_rejects_any_edit(make_config, pretrained, tmp_path):
    unlearn(config(make_config, pretrained, "forget=[spk03]", "unlearn.epochs=1"))
    out = tmp_path / "run" / "request-01"
    receipt, model = out / "receipt.json", out / "model.pt"
    assert verify_receipt(receipt, model).ok
    cli = [sys.executable, "-m", "qpae.cli.verify_receipt", str(receipt)]
    ok = subprocess.run([*cli, str(model)], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("OK") and len(ok.stdout.splitlines()) == 1

    edited = tmp_path / "edited.pt"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 1  # one bit of the weights
    edited.write_bytes(bytes(data))
    bad = subprocess.run([*cli, str(edited)], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stdout.startswith("FAILED") and len(bad.stdout.splitlines()) == 1
    assert not verify_receipt(receipt, pretrained).ok
    assert "no receipt" in verify_receipt(tmp_path / "none.json", model).reason
    # a receipt that names someone else for the same class index does not verify
    forged = json.loads(receipt.read_text())
    forged["request"]["forget_class_names"] = ["spk00"]
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    verdict = verify_receipt(tmp_path / "forged.json", model)
    assert not verdict.ok and "spk03" in verdict.reason


def test_retrain_follows_the_pretraining_recipe(make_config, pretrained, tmp_path):
    _, meta = load_model(pretrained)
    [report] = unlearn(
        make_config("unlearn", *SYNTHETIC_8, f"input={pretrained}", "method=retrain", "forget_index=[0]")
    )
    assert report["method"]["epochs"] == meta["recipe"]["epochs"]
    assert report["method"]["optimizer_settings"] == {"lr": 1e-3, "weight_decay": 1e-4}
    assert report["method"]["scheduler"]["T_max"] == meta["recipe"]["scheduler"]["T_max"]
    assert report["after"]["FA"] == 0.0


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


@pytest.mark.ddp
def test_ddp_unlearning_matches_single_process(make_config, tmp_path, feature_cache, synthetic_root):
    """Two gloo processes measure the same before/after metrics as one process: the test loader
    is built after the process group exists, so no clip is counted twice (an odd test set is
    where Lightning's padding sampler would count one twice). A sequence of two requests: the
    second starts, on every rank, from the model the first published."""
    from qpae.pipeline.pretrain import pretrain

    data = ["dataset=synthetic_speakers", "dataset.n_speakers=5", "dataset.repetitions=3"]
    data += ["dataset.test_fraction=0.1", "model=small_cnn", "logger=none"]  # 15 test clips
    source = tmp_path / "source.pt"
    pretrain(make_config("pretrain", *data, "trainer.max_epochs=1", f"output={source}"))
    overrides = [
        f"paths.root={tmp_path}",
        f"hydra.run.dir={tmp_path}/ddp",
        f"paths.cache={feature_cache}",
        f"paths.data={synthetic_root}",
        *data,
        f"input={source}",
        "requests=[[spk02],[spk03]]",
        "method=finetune",
        "unlearn.epochs=0",  # the same weights in both runs: only the measurement is compared
        "purge=false",  # the session's shared store keeps spk02 and spk03 for the single-process run
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.enable_progress_bar=false",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "qpae.cli.unlearn", *overrides],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    single_cfg = make_config(
        "unlearn",
        *data,
        f"input={source}",
        "requests=[[spk02],[spk03]]",
        "method=finetune",
        "unlearn.epochs=0",
    )
    singles = unlearn(single_cfg)
    for k, single in enumerate(singles, start=1):
        ddp = json.loads((tmp_path / "ddp" / f"request-{k:02d}" / "metrics.json").read_text())
        for when in ("before", "after"):
            for key in ("FA", "RA", "IL", "FAR"):
                assert ddp[when][key] == pytest.approx(single[when][key], abs=1e-4), (k, when, key)
