"""Shared fixtures: the real speech samples in ../shared/data and an offline environment."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before any import of timm / wandb: never wait for a hub, never upload.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("QPAE_SHARED_DATA", ROOT.parent / "shared" / "data"))


WANDB_DIRS = ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR")


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.gpu`` tests are skipped, visibly, on a machine without a CUDA GPU (as
    lightning-hydra-template's ``RunIf``), rather than passing without running."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def temp_inside_pytest_basetemp(tmp_path_factory):
    """Everything the code under test puts in the system temp folder or W&B's home folders (media,
    artifact staging, DDP children's files) goes under pytest's own base folder, which pytest removes
    (pyproject: tmp_path_retention_policy), instead of piling up in /tmp run after run."""
    folder = tmp_path_factory.mktemp("system-temp")
    # W&B also stages every logged table under $HOME (~/.local/share/wandb) unless told otherwise
    env = {"TMPDIR": str(folder)}
    env |= {var: str(folder / "wandb" / var.lower()) for var in WANDB_DIRS}
    previous, previous_env = tempfile.tempdir, {k: os.environ.get(k) for k in env}
    tempfile.tempdir = str(folder)
    os.environ.update(env)
    yield folder
    tempfile.tempdir = previous
    for key, value in previous_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; a test that needs it fails under CI and skips elsewhere when absent."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the real speech samples at {SHARED_DATA}")
        pytest.skip(f"no real speech samples at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory) -> Path:
    """One feature cache for the session, so each dataset is decoded once."""
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


def compose_config(config_name: str, overrides: list[str], root: Path):
    """Compose a Hydra config as the entry point would, with every output under ``root``."""
    from qpae.pipeline.config import compose

    if config_name == "unlearn" and not any(o.startswith("schedule=") for o in overrides):
        # tests written for fixed epochs (unlearn.epochs=N) pin the paper's schedule; the
        # automatic schedule's tests ask for schedule=auto
        overrides = ["schedule=paper", *overrides]
    if config_name == "unlearn" and not any(o.startswith("purge=") for o in overrides):
        # the session's feature store is shared by every test: only the purge tests purge (each in
        # its own store)
        overrides = ["purge=false", *overrides]
    return compose(config_name, [f"paths.root={root}", f"paths.output_dir={root}/run", *overrides])


@pytest.fixture
def make_config(tmp_path, feature_cache, synthetic_root):
    """compose(name, *overrides) with outputs in tmp_path and the session's shared caches."""

    def make(config_name: str, *overrides: str):
        base = [f"paths.cache={feature_cache}", f"paths.data={synthetic_root}"]
        return compose_config(config_name, [*base, *overrides], tmp_path)

    return make


# 8 synthetic speakers × 10 digits × 4 repetitions; the small CNN learns them in a few epochs.
SYNTHETIC_8 = [
    "dataset=synthetic_speakers",
    "dataset.n_speakers=8",
    "dataset.repetitions=4",
    "dataset.batch_size=32",
    "model=small_cnn",
    "logger=none",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory, feature_cache, synthetic_root) -> Path:
    """A pretrained synthetic-speaker model shared by the unlearning tests (never modified)."""
    from qpae.pipeline.pretrain import pretrain

    root = tmp_path_factory.mktemp("pretrained")
    cfg = compose_config(
        "pretrain",
        [
            f"paths.cache={feature_cache}",
            f"paths.data={synthetic_root}",
            *SYNTHETIC_8,
            "trainer.max_epochs=15",
        ],
        root,
    )
    metrics = pretrain(cfg)
    assert metrics["test/acc"] > 0.75, metrics  # measured 0.86; chance is 0.125
    return Path(cfg.output)


def store_copy(tmp_path: Path, feature_cache: Path, pretrained: Path) -> tuple[Path, Path]:
    """A copy of the session's feature store and of the pretrained model, the copy naming it as
    its cache: a purge there never reaches the store every other test reads. (cache, model)."""
    import shutil

    from qpae.checkpoints import build_net, read_model, save_model

    cache = tmp_path / "cache"
    shutil.copytree(feature_cache / "store", cache / "store")
    model = read_model(pretrained)
    meta = {
        **model.meta,
        "training_artifacts": {**model.meta.get("training_artifacts", {}), "feature_cache": str(cache)},
    }
    net = build_net(meta)
    net.load_state_dict(model.state_dict)
    original = tmp_path / "original.pt"
    save_model(original, net, meta)
    return cache, original
