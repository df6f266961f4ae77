"""The Docker images install the same torch/torchvision/torchaudio pins as pyproject.toml."""

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PINNED = ("torch", "torchvision", "torchaudio")


def project_pins() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = dict(d.split("==") for d in deps if "==" in d)
    assert set(PINNED) <= set(pins), "torch, torchvision and torchaudio must all be pinned with =="
    return pins


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cpu"])
def test_docker_pins_match_pyproject(dockerfile):
    text = (ROOT / "docker" / dockerfile).read_text()
    found = dict(re.findall(r"\b(torch|torchvision|torchaudio)==([\w.]+)", text))
    assert {k: found.get(k) for k in PINNED} == {k: project_pins()[k] for k in PINNED}
