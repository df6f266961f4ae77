"""--help starts with what the command does and examples, and lists only the groups that apply."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from qpae.pipeline.config import CONF_DIR

COMMANDS = {
    "pretrain": (
        "qpae-pretrain: train",
        {"dataset", "model", "trainer", "logger", "callbacks", "experiment"},
    ),
    "unlearn": (
        "qpae-unlearn: make a pretrained model forget",
        {"dataset", "model", "method", "schedule", "trainer", "logger", "experiment"},
    ),
    "audit": ("qpae-audit: is a forgotten speaker really gone?", {"dataset", "model", "experiment"}),
    "bench": ("qpae-bench: methods", {"bench"}),
}


def listed_groups(config: str) -> dict[str, set[str]]:
    template = yaml.safe_load((Path(CONF_DIR) / f"{config}.yaml").read_text())["hydra"]["help"]["template"]
    block = template.split("Config groups", 1)[1].split("\n\n", 1)[0]
    groups = {}
    for line in block.splitlines()[1:]:
        name, _, options = line.strip().partition(": ")
        groups[name] = set(options.split(", "))
    return groups


@pytest.mark.parametrize("config", COMMANDS)
def test_help_lists_exactly_the_groups_that_apply_with_their_real_options(config):
    groups = listed_groups(config)
    assert set(groups) == COMMANDS[config][1]
    for group, options in groups.items():
        files = {p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml")}
        if group == "trainer":
            files.discard("default")  # the base that cpu, gpu and ddp extend
        assert options == files, group


@pytest.mark.parametrize("config", COMMANDS)
def test_help_starts_with_a_description_and_examples(config):
    proc = subprocess.run(
        [sys.executable, "-m", f"qpae.cli.{config}", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(COMMANDS[config][0])
    assert "Examples:" in proc.stdout and f"qpae-{config} " in proc.stdout
    if config == "unlearn":  # the settings that govern the run, not the trainer's unused default
        assert "max_epochs: ${oc.select:unlearn.epochs,0}" in proc.stdout
