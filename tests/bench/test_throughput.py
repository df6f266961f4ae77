"""The throughput benchmark's timer and loops, and the GPU profile (composed, refused without a GPU)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from qpae.bench.throughput import StepTimer, autocast_dtype, plain_loop
from qpae.pipeline import device as device_mod
from qpae.pipeline.device import DeviceError, build_trainer, check_device, resolve_precision

from conftest import ROOT

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")


class FakeClock:
    def __init__(self) -> None:
        self.t, self.reads = 0.0, []

    def __call__(self) -> float:
        self.reads.append(self.t)
        return self.t


def run_epochs(timer: StepTimer, clock: FakeClock, epochs: int, batches: int, batch: int, dt: float) -> None:
    """Drive the timer as Lightning does: batch_idx restarts every epoch; each step takes dt."""
    for _ in range(epochs):
        for batch_idx in range(batches):
            clock.t += dt
            timer.on_train_batch_end(None, None, None, (None, list(range(batch))), batch_idx)
    timer.on_train_end(None, None)


def test_the_timer_counts_global_steps_across_epoch_boundaries():
    clock = FakeClock()
    timer = StepTimer(warmup=5, clock=clock, sync=lambda: None)
    run_epochs(timer, clock, epochs=4, batches=3, batch=8, dt=0.5)  # 12 steps, 3 per epoch
    assert timer.steps == 12 and timer.timed_steps == 7
    assert timer.samples == 7 * 8
    assert (timer.start, timer.end) == (2.5, 6.0)  # read after step 5 and at the end
    assert timer.samples_per_s == pytest.approx(8 / 0.5)


def test_the_timer_refuses_to_report_without_timed_steps():
    clock = FakeClock()
    timer = StepTimer(warmup=5, clock=clock, sync=lambda: None)
    run_epochs(timer, clock, epochs=1, batches=5, batch=4, dt=1.0)
    with pytest.raises(RuntimeError, match="raise steps"):
        _ = timer.samples_per_s
    with pytest.raises(ValueError, match="warmup"):
        StepTimer(warmup=0)


def test_the_timer_synchronises_before_each_clock_read():
    order = []
    clock = FakeClock()
    timer = StepTimer(
        warmup=2, clock=lambda: order.append("clock") or clock(), sync=lambda: order.append("sync")
    )
    run_epochs(timer, clock, epochs=2, batches=2, batch=1, dt=1.0)
    assert order == ["sync", "clock", "sync", "clock"]


def test_the_plain_loop_runs_its_steps_across_epochs():
    x, y = torch.randn(10, 1, 8, 8), torch.arange(10) % 3
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    out = plain_loop(net, x, y, batch_size=4, steps=5, warmup=2)  # 3 batches an epoch: crosses two
    assert out["samples_per_s"] > 0 and out["batch_size"] == 4


def test_precision_names_map_to_autocast_types():
    assert autocast_dtype("bf16-mixed") is torch.bfloat16
    assert autocast_dtype("16-mixed") is torch.float16
    assert autocast_dtype("32-true") is None and autocast_dtype(32) is None


def test_the_gpu_profile_composes(make_config):
    cfg = make_config("pretrain", "trainer=gpu")
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer.speed.channels_last is True and cfg.trainer.speed.compile is False
    assert make_config("unlearn", "trainer=gpu").trainer.speed.channels_last


@NO_GPU
def test_the_gpu_profile_is_refused_without_a_gpu_naming_trainer_cpu(make_config):
    cfg = make_config("pretrain", "trainer=gpu")
    with pytest.raises(DeviceError, match="trainer=cpu"):
        check_device(cfg.trainer)
    with pytest.raises(DeviceError, match="trainer=cpu"):
        build_trainer(cfg.trainer)
    check_device(make_config("pretrain", "trainer=cpu").trainer)  # the CPU profile passes


@NO_GPU
@pytest.mark.parametrize("command", ["pretrain", "unlearn"])
def test_the_command_line_refuses_trainer_gpu_before_reading_any_data(tmp_path, command):
    # no data anywhere: the device check must come first (a data error would mean work was done)
    args = [
        f"paths.root={tmp_path}",
        f"paths.data={tmp_path}/nothing",
        "dataset=fsdd",
        "trainer=gpu",
        "logger=none",
    ]
    if command == "unlearn":
        (tmp_path / "m.pt").write_bytes(b"x")
        args += ["forget_index=[0]", f"input={tmp_path}/m.pt"]
    done = subprocess.run(
        [sys.executable, "-m", f"qpae.cli.{command}", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "trainer=cpu" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "nothing").exists() and not (tmp_path / ".cache").exists()


def test_bf16_falls_back_to_fp16_with_a_scaler_on_a_gpu_without_it(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Old GPU")
    with caplog.at_level("WARNING", logger=device_mod.__name__):
        assert resolve_precision("bf16-mixed", "gpu") == "16-mixed"
    assert "no native bf16" in caplog.text and "Old GPU" in caplog.text
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("bf16-mixed", "gpu") == "bf16-mixed"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"  # a CPU asks for itself


def test_channels_last_applies_on_an_accelerator_only():
    from qpae.pipeline.device import DeviceSpeed

    class Strategy:
        def __init__(self, kind):
            self.root_device = torch.device(kind)

    class Trainer:
        def __init__(self, kind):
            self.strategy = Strategy(kind)

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    DeviceSpeed(channels_last=True).setup(Trainer("cpu"), net, "fit")
    assert net[0].weight.is_contiguous()
    net2 = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    DeviceSpeed(channels_last=True).setup(Trainer("meta"), net2, "fit")  # any non-CPU device
    assert net2[0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.gpu
def test_the_gpu_profile_trains_a_step(make_config):
    cfg = make_config("pretrain", "trainer=gpu")
    trainer = build_trainer(cfg.trainer, fast_dev_run=1, logger=False)
    assert trainer.strategy.root_device.type == "cuda"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"networks": ["resnet81"]}, "networks"),
        ({"sizes": ["big"]}, "sizes"),
        ({"steps": 0}, "steps"),
    ],
)
def test_bad_benchmark_settings_are_refused_before_any_work(tmp_path, kwargs, match):
    from qpae.bench.throughput import measure

    with pytest.raises(ValueError, match=match):
        measure(
            tmp_path / "no-data", {"_target_": "lightning.pytorch.Trainer", "accelerator": "cpu"}, **kwargs
        )
