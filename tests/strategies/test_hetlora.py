"""HetLoRA: truncation down, zero-padded norm-weighted averaging up, self-pruning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from airtune.lora.ops_hetlora import hetlora_aggregate
from airtune.strategies.base import ServerState
from airtune.strategies.hetlora import HetLoRA

RANKS = [2, 4, 8, 4]


def server_with_global(strategy, syn, gen) -> ServerState:
    init = strategy.init_state(syn.make_state(8, gen, zero_b=True))
    return ServerState(syn.make_state(8, gen), init.extra)  # a non-trivial global pair


def test_device_of_rank_r_receives_first_r_components(syn, gen):
    s = HetLoRA(context=syn.context(RANKS))
    server = server_with_global(s, syn, gen)
    tasks = s.configure_round(0, server, [0, 1, 2], {0: 1, 1: 2, 2: 3}, steps=3)
    for task in tasks:
        r = RANKS[task.device]
        assert task.adapter == f"r{r}" and task.rank == r and task.steps == 3
        for p in syn.LAYERS:
            A, B = server.tensors[f"{p}.lora_A.weight"], server.tensors[f"{p}.lora_B.weight"]
            assert torch.equal(task.state[f"{p}.lora_A.weight"], A[:r])
            torch.testing.assert_close(task.state[f"{p}.lora_B.weight"], B[:, :r] / (syn.ALPHA / r))
            # the device's effective update is the first r components of the global one
            torch.testing.assert_close(syn.effective(task.state, p), B[:, :r] @ A[:r])
        for k in syn.HEAD:
            assert torch.equal(task.state[k], server.tensors[k])


@pytest.mark.parametrize("weighting", ["norm", "data"])
def test_aggregate_is_padded_weighted_average(syn, gen, weighting):
    s = HetLoRA({"weighting": weighting}, context=syn.context(RANKS))
    server = s.init_state(syn.make_state(8, gen, zero_b=True))
    ups = [syn.update(k, syn.make_state(RANKS[k], gen), n) for k, n in [(0, 10), (1, 30), (2, 60)]]
    new, report = s.aggregate(0, server, ups, delivered={0, 1, 2})
    for p in syn.LAYERS:
        As = [u.state[f"{p}.lora_A.weight"] for u in ups]
        Bs = [u.state[f"{p}.lora_B.weight"] for u in ups]
        ranks = [RANKS[u.device] for u in ups]
        A_ref, B_ref = hetlora_aggregate(As, Bs, ranks, [syn.ALPHA / r for r in ranks], 8, weighting, [10, 30, 60])
        torch.testing.assert_close(new.tensors[f"{p}.lora_A.weight"], A_ref)
        torch.testing.assert_close(new.tensors[f"{p}.lora_B.weight"], B_ref)
    for k in syn.HEAD:
        ref = sum(w * u.state[k] for w, u in zip([0.1, 0.3, 0.6], ups))
        torch.testing.assert_close(new.tensors[k], ref)
    assert report["aggregated"] == 3 and report["global_rank"] == 8 and report["cross_cov_fro"] > 0
    assert report["ranks_delivered"] == [2, 4, 8]


def test_single_participant_round_trip_preserves_effective_update(syn, gen):
    s = HetLoRA(context=syn.context(RANKS))
    server = s.init_state(syn.make_state(8, gen, zero_b=True))
    mine = syn.make_state(4, gen)
    new, report = s.aggregate(0, server, [syn.update(1, mine, 50)], delivered={1})
    assert report["cross_cov_fro"] == 0.0
    for p in syn.LAYERS:
        glob = new.tensors[f"{p}.lora_B.weight"] @ new.tensors[f"{p}.lora_A.weight"]
        torch.testing.assert_close(glob, syn.effective(mine, p))
    (task,) = s.configure_round(1, new, [1], {1: 0}, 1)  # device 1 has rank 4
    for key, value in mine.items():
        torch.testing.assert_close(task.state[key], value)


def test_self_pruning_when_tail_norm_decreases(syn, gen):
    opts = {"self_prune": True, "prune_gamma": 0.5, "prune_lambda": 0.1}
    s = HetLoRA(opts, context=syn.context(RANKS))
    server = s.init_state(syn.make_state(8, gen, zero_b=True))
    (task,) = s.configure_round(0, server, [2], {2: 0}, 1)
    assert task.regularizer is not None and task.memo["tail_ref"] is None
    first = syn.update(2, syn.make_state(8, gen), 20, **task.memo)
    server, report = s.aggregate(0, server, [first], {2})
    assert report["pruned"] == [] and int(server.extra["ranks"][2]) == 8  # no reference yet: no prune
    ref = float(server.extra["tail_ref"][2])
    assert ref > 0
    (task,) = s.configure_round(1, server, [2], {2: 0}, 1)
    assert task.memo["tail_ref"] == ref
    small = syn.make_state(8, gen)
    for p in syn.LAYERS:  # shrink the tail (components 4..8) below the reference
        small[f"{p}.lora_B.weight"][:, 4:] *= 1e-3
    second = syn.update(2, small, 20, **task.memo)
    assert s.uplink_payload(second)[f"{next(iter(syn.LAYERS))}.lora_A.weight"].shape[0] == 4
    server, report = s.aggregate(1, server, [second], delivered=set())  # lost, but pruned locally
    assert report["pruned"] == [2] and int(server.extra["ranks"][2]) == 4
    assert np.isnan(server.extra["tail_ref"][2]) and report["aggregated"] == 0
    (task,) = s.configure_round(2, server, [2], {2: 0}, 1)
    assert task.adapter == "r4" and task.rank == 4
    assert s.device_ranks(server).tolist() == [2, 4, 4, 4]


def test_pruning_off_by_default(syn, gen):
    s = HetLoRA(context=syn.context(RANKS))
    server = s.init_state(syn.make_state(8, gen, zero_b=True))
    (task,) = s.configure_round(0, server, [2], {2: 0}, 1)
    assert task.regularizer is None
    up = syn.update(2, syn.make_state(8, gen), 20, tail_ref=1e9)
    server, report = s.aggregate(0, server, [up], {2})
    assert report["pruned"] == [] and s.device_ranks(server).tolist() == RANKS


def test_pruned_upload_keeps_the_effective_update_of_the_kept_components(syn):
    """r = 4 -> r' = 2, alpha = 16, by hand: (alpha / r') B' A' == (alpha / r) B[:, :2] A[:2, :]."""
    p = "base_model.model.enc.layer.0.query"
    a_key, b_key, head = f"{p}.lora_A.weight", f"{p}.lora_B.weight", "base_model.model.classifier.bias"
    A = torch.tensor([[1., 0., 0.], [0., 1., 0.], [0., 0., 1.], [1., 1., 1.]], dtype=torch.float64)  # (4, 3)
    B = torch.tensor([[1., 2., 3., 4.], [5., 6., 7., 8.]], dtype=torch.float64)                         # (2, 4)
    state = {a_key: A, b_key: B, head: torch.tensor([0.5, -0.5], dtype=torch.float64)}
    s = HetLoRA({"self_prune": True, "prune_gamma": 0.5}, context=syn.context([4, 4]))
    # tail = components 2, 3: ||B[:, 2:]||_F ||A[2:]||_F = sqrt(138) * 2 < the reference: prune to 2
    up = syn.update(0, state, 10, tail_ref=1e9)
    sent = s.uplink_payload(up)
    assert torch.equal(sent[a_key], torch.tensor([[1., 0., 0.], [0., 1., 0.]], dtype=torch.float64))
    assert torch.equal(sent[b_key], torch.tensor([[0.5, 1.0], [2.5, 3.0]], dtype=torch.float64))  # x r'/r = 1/2
    kept = torch.tensor([[4., 8., 0.], [20., 24., 0.]], dtype=torch.float64)  # (16 / 4) * B[:, :2] @ A[:2]
    torch.testing.assert_close((16.0 / 4) * B[:, :2] @ A[:2], kept, rtol=0, atol=0)
    torch.testing.assert_close((16.0 / 2) * sent[b_key] @ sent[a_key], kept, rtol=0, atol=1e-6)
    assert torch.equal(sent[head], state[head])
    # the server sees the same update: a sole delivered upload becomes the (scale-1) global pair ...
    server = s.init_state({k: torch.zeros_like(v) for k, v in state.items()})
    new, report = s.aggregate(0, server, [up], delivered={0})
    assert report["pruned"] == [0] and report["ranks_delivered"] == [2]
    torch.testing.assert_close(new.tensors[b_key] @ new.tensors[a_key], kept, rtol=0, atol=1e-6)
    # ... and the device, now of rank 2, gets its pruned factors back
    (task,) = s.configure_round(1, new, [0], {0: 0}, 1)
    assert task.rank == 2
    torch.testing.assert_close(task.state[a_key], sent[a_key], rtol=0, atol=1e-12)
    torch.testing.assert_close(task.state[b_key], sent[b_key], rtol=0, atol=1e-12)
