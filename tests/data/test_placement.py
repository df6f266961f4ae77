"""Batches on an accelerator: gathered whole, from the device or pinned memory, and always the
same samples in the same order as the per-item path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_store_datamodule import module, write_corpus
from torch.utils.data import DataLoader, Dataset

import qpae.data.base as base
from qpae.data.placement import MiB, Placement, ResidentWindows, choose_placement, feature_bytes


@pytest.fixture
def dm(tmp_path):
    return module(write_corpus(tmp_path, per=8), tmp_path / "cache", batch_size=5, eval_batch_size=7)


class PerItem(Dataset):
    """The windows one ``__getitem__`` at a time, collated by the default collate (the slow path)."""

    def __init__(self, data) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        return self.data[i]


def resident_on_cpu(monkeypatch):
    """Make the data module hold its features "on the device" on a CPU (the GPU path, testable here)."""
    monkeypatch.setattr(
        base,
        "choose_placement",
        lambda nbytes, device, budget: Placement("resident", torch.device(device), "test"),
    )


def as_list(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def assert_same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(ya, yb)
        assert torch.equal(xa, xb)


def test_the_batched_path_yields_the_per_item_batches_in_the_same_order(dm):
    train = dm.dataset("train")
    per_item = DataLoader(
        PerItem(train),
        batch_size=dm.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(dm.order_seed),
    )
    assert_same(as_list(dm.train_dataloader()), as_list(per_item))


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_resident_batches_equal_the_stores_exactly(dm, monkeypatch, seed):
    dm.order_seed = seed
    host_train, host_test = as_list(dm.train_dataloader()), as_list(dm.test_dataloader())
    host_unlearn = as_list(dm.unlearning_loader([0], retain_fraction=0.5))
    resident_on_cpu(monkeypatch)
    dm.place_on("meta")  # any change of device drops earlier copies; then back to the CPU
    dm.place_on("cpu")
    train_loader = dm.train_dataloader()
    assert isinstance(train_loader.dataset, ResidentWindows) and train_loader.num_workers == 0
    assert_same(as_list(train_loader), host_train)
    assert_same(as_list(dm.test_dataloader()), host_test)
    assert_same(as_list(dm.unlearning_loader([0], retain_fraction=0.5)), host_unlearn)


def test_every_training_sample_once_per_epoch_and_the_forget_share_kept(dm, monkeypatch):
    resident_on_cpu(monkeypatch)
    train = dm.dataset("train")
    seen = torch.cat([y for _, y in dm.train_dataloader()])
    assert sorted(seen.tolist()) == sorted(train.targets.tolist())
    loader = dm.unlearning_loader([0], retain_fraction=0.5)
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        y = torch.cat([b for _, b in loader])
        forget = int((train.targets == 0).sum())
        assert int((y == 0).sum()) == forget  # every forget sample, once
        assert int((y != 0).sum()) == round(0.5 * (len(train) - forget))


def test_resident_copies_follow_the_budget_and_are_dropped(dm, monkeypatch):
    resident_on_cpu(monkeypatch)
    dm.train_dataloader(), dm.test_dataloader()
    assert len(dm._resident) == 2
    dm.train_dataloader()  # the same split again: reused, not copied twice
    assert len(dm._resident) == 2
    dm.drop_device_copies()
    assert not dm._resident


def test_a_copy_first_made_under_inference_mode_can_still_be_wiped(dm, monkeypatch):
    """Lightning's test loop runs under inference mode: the test split's copy is made there, and
    qpae-unlearn wipes it after the run, outside it (on a GPU this once failed at the very end)."""
    resident_on_cpu(monkeypatch)
    with torch.inference_mode():
        x, _ = next(iter(dm.test_dataloader()))
    [copy] = dm._resident.values()
    dm.drop_device_copies()
    assert not copy.features.any() and not dm._resident


def test_resident_gather_equals_the_store_for_any_positions(dm):
    train = dm.dataset("train")
    resident = ResidentWindows(train, "cpu", chunk=3)  # several chunks
    pos = np.random.default_rng(0).permutation(len(train))[:9]
    x, y = resident.__getitems__(pos)
    xs, ys = train.__getitems__(pos)
    assert torch.equal(x, xs) and torch.equal(y, ys)
    assert resident.features.dtype == torch.float16  # as the store holds them: half the bytes


def test_the_placement_follows_the_device_and_the_budget():
    cpu = choose_placement(10 * MiB, "cpu", 4096)
    assert cpu.kind == "host" and not cpu.pin_memory
    fits = choose_placement(10 * MiB, "cuda:0", 4096)
    assert fits.kind == "resident"
    over = choose_placement(10 * MiB, "cuda:0", 5)
    assert over.kind == "pinned" and over.pin_memory and "device_cache_mb=5" in over.reason
    assert choose_placement(1, "cuda:0", 0).kind == "pinned"  # 0 turns the device cache off
    with pytest.raises(ValueError, match="device_cache_mb"):
        choose_placement(1, "cuda:0", -1)


def test_a_negative_device_budget_is_refused_before_any_work(tmp_path):
    from qpae.data.manifest import ManifestDataModule

    with pytest.raises(ValueError, match="device_cache_mb"):
        ManifestDataModule(tmp_path / "none.csv", device_cache_mb=-5)


def test_feature_bytes_counts_half_precision(dm):
    train = dm.dataset("train")
    assert feature_bytes(train) == len(train) * int(np.prod(train.shape)) * 2


@pytest.mark.gpu
def test_on_a_gpu_resident_and_pinned_batches_equal_the_hosts(dm):
    host = as_list(dm.train_dataloader())
    dm.place_on("cuda:0")
    loader = dm.train_dataloader()
    assert isinstance(loader.dataset, ResidentWindows)
    assert_same([(x.cpu(), y.cpu()) for x, y in loader], host)
    dm.device_cache_mb = 0
    dm.place_on("cpu"), dm.place_on("cuda:0")
    pinned = dm.train_dataloader()
    assert pinned.pin_memory
    assert_same(as_list(pinned), host)


def test_a_split_beyond_the_budget_is_pinned_and_the_held_ones_stay(dm, monkeypatch):
    resident_on_cpu(monkeypatch)
    train_bytes = feature_bytes(dm.dataset("train"))
    dm.device_cache_mb = (train_bytes + 1) / MiB  # room for the training split only
    train = dm.train_dataloader()
    test = dm.test_dataloader()
    assert isinstance(train.dataset, ResidentWindows) and not isinstance(test.dataset, ResidentWindows)
    assert len(dm._resident) == 1


def test_dropped_copies_are_zeroed_before_they_go(dm, monkeypatch):
    resident_on_cpu(monkeypatch)
    copy = dm.train_dataloader().dataset
    features = copy.features
    dm.drop_device_copies()
    assert not features.any()  # the memory a loader or the allocator may still hold is zeros
    with pytest.raises(RuntimeError, match="dropped"):
        copy.__getitems__([0])  # and the copy serves nothing
