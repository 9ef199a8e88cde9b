"""Synthetic LoRA states for strategy tests: two adapted layers and a head, small random tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from airtune.lora.adapters import LoraSpec
from airtune.strategies.base import StrategyContext
from airtune.training.engine import ClientUpdate

LAYERS = {  # prefix -> (d_out, n_in)
    "base_model.model.enc.layer.0.query": (6, 5),
    "base_model.model.enc.layer.0.value": (7, 5),
}
HEAD = {"base_model.model.classifier.weight": (2, 5), "base_model.model.classifier.bias": (2,)}
ALPHA = 16.0


def make_state(rank: int, gen: torch.Generator, zero_b: bool = False) -> dict[str, torch.Tensor]:
    """A PEFT-keyed state of rank ``rank`` (float64 so identities hold to 1e-12)."""
    out = {}
    for p, (d, n) in LAYERS.items():
        out[f"{p}.lora_A.weight"] = torch.randn(rank, n, generator=gen, dtype=torch.float64)
        out[f"{p}.lora_B.weight"] = (torch.zeros(d, rank, dtype=torch.float64) if zero_b
                                     else torch.randn(d, rank, generator=gen, dtype=torch.float64))
    for k, shape in HEAD.items():
        out[k] = torch.randn(*shape, generator=gen, dtype=torch.float64)
    return out


def effective(state: dict[str, torch.Tensor], prefix: str, alpha: float = ALPHA) -> torch.Tensor:
    """s B A of one layer, s = alpha / r (independent of the package's helpers)."""
    A, B = state[f"{prefix}.lora_A.weight"], state[f"{prefix}.lora_B.weight"]
    return (alpha / A.shape[0]) * B @ A


def context(ranks, seed: int = 0) -> StrategyContext:
    return StrategyContext(np.array(ranks), LoraSpec(int(max(ranks)), ALPHA, 0.0, ("query", "value")), seed)


def update(device: int, state: dict, num_samples: int, **memo) -> ClientUpdate:
    return ClientUpdate(device, state, num_samples, 0.5, memo)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def syn():
    """The helpers above as a fixture (test modules cannot import conftest under importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(make_state=make_state, effective=effective, context=context, update=update,
                           LAYERS=LAYERS, HEAD=HEAD, ALPHA=ALPHA)
