"""``train.device``: the selection logic (auto prefers CUDA, then MPS, then the CPU; explicit
choices are checked), on a CPU-only machine by faking what torch reports; and a GPU smoke test of
two rounds of the default experiment that runs only where CUDA is present."""

from __future__ import annotations

import json

import pytest
import torch

from airtune.errors import ConfigError
from airtune.training import device as dev


@pytest.fixture
def fake(monkeypatch):
    def set_(cuda: int = 0, mps: bool = False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(dev, "_mps_available", lambda: mps)
    return set_


def test_auto_prefers_cuda_then_mps_then_cpu(fake):
    fake(cuda=2, mps=True)
    assert dev.resolve_device("auto")[0] == torch.device("cuda:0")
    fake(cuda=0, mps=True)
    assert dev.resolve_device("auto")[0] == torch.device("mps")
    fake(cuda=0, mps=False)
    d, why = dev.resolve_device("auto")
    assert d == torch.device("cpu") and "no CUDA" in why


def test_explicit_choices_are_checked_with_one_line_fixes(fake):
    fake(cuda=2)
    assert dev.resolve_device("cuda")[0] == torch.device("cuda:0")
    assert dev.resolve_device("cuda:1")[0] == torch.device("cuda:1")
    with pytest.raises(ConfigError, match=r"only 2 CUDA device\(s\).*fix:"):
        dev.resolve_device("cuda:2")
    fake(cuda=0)
    with pytest.raises(ConfigError, match="no CUDA device.*fix: use auto or cpu"):
        dev.resolve_device("cuda")
    with pytest.raises(ConfigError, match="MPS is not available"):
        dev.resolve_device("mps")
    with pytest.raises(ConfigError, match="not a device"):
        dev.resolve_device("gpu")
    assert dev.resolve_device("cpu")[0] == torch.device("cpu")


def test_config_refuses_a_malformed_device():
    from airtune.config import load_config

    with pytest.raises(ConfigError, match="train.device"):
        load_config(None, ["train.device=gpu0"])
    assert load_config(None, ["train.device=cuda:3"]).train.device == "cuda:3"


def test_batches_move_to_the_device():
    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long), "n": 3}
    out = dev.to_device(batch, torch.device("cpu"))
    assert out["input_ids"] is batch["input_ids"] and out["n"] == 3      # no copy when already there


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_smoke_two_rounds_of_the_default_experiment(glue_dir, tmp_path):
    from airtune.cli import main
    from tests.conftest import tiny_overrides

    out = tmp_path / "run"
    assert main(["run", "--quiet", "--out", str(out), *tiny_overrides(glue_dir, rounds=2), "train.device=cuda"]) == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[-1]["accuracy"] is not None
    assert "training device cuda:0" in (out / "run.log").read_text()
