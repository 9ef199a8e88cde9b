"""Shared fixtures: the real GLUE data (never downloaded) and tiny real-data configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "glue"


def data_dir() -> Path | None:
    env = os.environ.get("AIRTUNE_DATA_DIR")
    for cand in (env, DEFAULT_DATA):
        if cand and (Path(cand) / "SST-2" / "train.tsv").exists():
            return Path(cand)
    return None


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    d = data_dir()
    if d is None:
        pytest.skip("GLUE data not found: set AIRTUNE_DATA_DIR (expects SST-2/train.tsv)")
    return d


@pytest.fixture(autouse=True, scope="session")
def _offline_and_cache(tmp_path_factory):
    """Tests never download; tokenised data are cached in a per-session folder."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("AIRTUNE_CACHE_DIR", str(tmp_path_factory.mktemp("token-cache")))
    yield


def tiny_overrides(glue_dir: Path, **extra) -> list[str]:
    """A few-second real run: SST-2 subset, 4 devices, 2 per round."""
    base = {
        "data.dir": str(glue_dir), "data.train_subset": 600, "data.test_subset": 200,
        "num_devices": 4, "devices_per_round": 2, "rounds": 3, "eval_every": 1,
        "train.local_steps": 3, "train.batch_size": 8, "data.min_partition_size": 20,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def split_vs_unsplit(model, batch, downlink: str, seed: int = 5):
    """One forward/backward of ``model`` unsplit and through ``lora.split``'s two halves, with the
    same dropout masks; returns ``(ref_loss, ref_grads, split_loss, split_grads)``."""
    import torch

    from airtune.lora.adapters import trainable_params
    from airtune.lora.split import split_model

    def grads():
        return {k: p.grad.clone() for k, p in trainable_params(model).items()}

    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    ref_loss = model(**batch).loss
    ref_loss.backward()
    ref = grads()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)       # the same dropout masks, drawn in the same order
    device, server = split_model(model, downlink)
    up = device.embed(batch)
    features = server.forward(up)
    loss, leaf = device.loss(features, up.lengths, batch["labels"])
    loss.backward()
    server.backward(leaf.grad)
    ours = grads()
    model.zero_grad(set_to_none=True)
    return ref_loss.detach(), ref, loss.detach(), ours
