"""split_fedlora on synthetic states: SFL-V1/V2 aggregation, head FedAvg over delivered devices,
bits hooks with the measured activation traffic, planned bits, device compute share."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from airtune.errors import ConfigError
from airtune.models.profile import ModelProfile, profile_model
from airtune.registry import STRATEGIES
from airtune.strategies.base import ServerState, StrategyContext, tensor_bits
from airtune.strategies.split_fed import SplitFedLoRA, prior_bits_per_sample
from airtune.training.engine import ClientUpdate
from airtune.training.split_loop import LinkTraffic
from tests.strategies.conftest import HEAD, LAYERS, context, make_state

PROFILE = ModelProfile(hidden_size=5, num_labels=2, embedding_params=1000, encoder_params=2000,
                       head_params=12, mean_tokens=10.0)


def ctx(K: int = 3) -> StrategyContext:
    base = context([4] * K)
    return StrategyContext(base.device_ranks, base.lora, 0, profile=PROFILE,
                           samples_per_round=np.array([80, 80, 40][:K]))


def updates(gen, info_bits=(1000, 500)):
    ups = []
    for k, n in zip(range(3), (10, 30, 60)):
        ups.append(ClientUpdate(k, make_state(4, gen), n, 0.5, traffic=LinkTraffic(
            uplink_bits=info_bits[0] * (k + 1), downlink_bits=info_bits[1] * (k + 1), iterations=1)))
    return ups


def test_registered_and_options_checked():
    assert STRATEGIES.get("split_fedlora") is SplitFedLoRA
    with pytest.raises(ConfigError, match="strategy.options.downlink"):
        SplitFedLoRA({"downlink": "everything"})


def test_per_device_lora_averaged_over_all_trained_heads_over_delivered():
    gen = torch.Generator().manual_seed(0)
    server = ServerState(make_state(4, gen))
    ups = updates(gen)
    new, rep = SplitFedLoRA({}, context=ctx()).aggregate(0, server, ups, delivered={0, 2})
    a_key = next(iter(LAYERS)) + ".lora_A.weight"
    # LoRA: data-size weights 10:30:60 over all three (the copies live on the server)
    torch.testing.assert_close(new.tensors[a_key], 0.1 * ups[0].state[a_key] + 0.3 * ups[1].state[a_key]
                               + 0.6 * ups[2].state[a_key])
    # head: only devices 0 and 2 delivered it, weights 10:60
    for k in HEAD:
        torch.testing.assert_close(new.tensors[k], (10 * ups[0].state[k] + 60 * ups[2].state[k]) / 70)
    assert rep["aggregated"] == 2 and rep["lora_copies"] == 3
    assert rep["split_uplink_bits"] == 6000 and rep["split_downlink_bits"] == 3000


def test_shared_lora_ends_with_the_chain_and_keeps_head_if_nothing_delivered():
    gen = torch.Generator().manual_seed(1)
    server = ServerState(make_state(4, gen))
    ups = updates(gen)
    strat = SplitFedLoRA({"server_lora": "shared"}, context=ctx())
    tasks = strat.configure_round(0, server, [0, 1, 2], {0: 1, 1: 2, 2: 3}, steps=5)
    assert all(t.loop == "split" and set(t.chain) == {k for k in server.tensors if "lora_" in k}
               for t in tasks)
    new, rep = strat.aggregate(0, server, ups, delivered=set())
    for k in server.tensors:
        expected = ups[-1].state[k] if "lora_" in k else server.tensors[k]
        assert torch.equal(new.tensors[k], expected)
    assert rep["lora_copies"] == 1 and rep["aggregated"] == 0


def test_bits_hooks_add_measured_traffic_to_the_head():
    gen = torch.Generator().manual_seed(2)
    state = make_state(4, gen)
    strat = SplitFedLoRA({}, context=ctx())
    up = ClientUpdate(0, state, 10, 0.1, traffic=LinkTraffic(uplink_bits=1234, downlink_bits=567, iterations=1))
    task = strat.configure_round(0, ServerState(state), [0], {0: 0}, 1)[0]
    head_bits = sum(state[k].numel() * 64 for k in HEAD)   # float64 test tensors
    assert strat.uplink_bits(up) == head_bits + 1234
    assert strat.downlink_bits(task, up) == head_bits + 567
    assert task.downlink == "tokens" and task.chain == ()


def test_planned_bits_prior_then_measured():
    gen = torch.Generator().manual_seed(3)
    server = ServerState(make_state(4, gen))
    strat = SplitFedLoRA({}, context=ctx())
    head_bits = tensor_bits({k: server.tensors[k] for k in HEAD})
    ul, dl = strat.planned_bits(server, 3)
    # prior, tokens downlink: up 2 * L * H * 32 + 32 = 2*10*5*32 + 32 = 3232, down 1600 per sample
    assert prior_bits_per_sample(5, 10.0, "tokens") == (3232.0, 1600.0)
    assert prior_bits_per_sample(5, 10.0, "pooled") == (1600.0 + 160.0 + 32.0, 160.0)
    np.testing.assert_allclose(ul, head_bits + np.array([80, 80, 40]) * 3232.0)
    np.testing.assert_allclose(dl, head_bits + np.array([80, 80, 40]) * 1600.0)
    new, _ = strat.aggregate(0, server, updates(gen), delivered={0, 1, 2})
    # measured: up (1000+2000+3000) / (80+80+40) = 30 bits per sample, down 15
    ul, dl = strat.planned_bits(new, 3)
    np.testing.assert_allclose(ul, head_bits + np.array([80, 80, 40]) * 30.0)
    np.testing.assert_allclose(dl, head_bits + np.array([80, 80, 40]) * 15.0)


def test_device_compute_fraction_by_hand():
    # tokens: device = 10*H*L + 4*H*L + 6*P_h = 500 + 200 + 72 = 772; total = 4*(2000+12)*10 = 80480
    assert SplitFedLoRA({}, context=ctx()).device_compute_fraction() == pytest.approx(772 / 80480)
    assert SplitFedLoRA({"downlink": "pooled"}, context=ctx()).device_compute_fraction() == pytest.approx(572 / 80480)


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.embeddings = nn.Embedding(11, 4)           # 44
        self.encoder.encoder = nn.Linear(4, 4)                  # 20
        self.classifier = nn.Linear(4, 3)                       # 15


def test_profile_counts_parameters_by_group():
    p = profile_model(_Tiny(), mean_tokens=7.5)
    assert (p.embedding_params, p.encoder_params, p.head_params) == (44, 20, 15)
    assert (p.hidden_size, p.num_labels, p.mean_tokens) == (4, 3, 7.5)
    assert p.total_flops_per_sample == 4 * 35 * 7.5
