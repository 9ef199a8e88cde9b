"""SOFT and its baselines on synthetic states: payload bits by hand, aggregation identities, error feedback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from airtune.allocation.exchange import Directives, SparsityDirective
from airtune.allocation.result import Allocation
from airtune.lora.ops_soft import orthogonality_penalty
from airtune.lora.sparsify import partial_rank_aggregate, soft_select
from airtune.strategies.base import ServerState
from airtune.strategies.fedit import FedIT
from airtune.strategies.flexlora import FlexLoRA
from airtune.strategies.soft import OrthPenalty, Soft, keep_counts
from airtune.strategies.sparse_baselines import ForgivingTopkLoRA, SvdLoRA, TopkLoRA

HEAD_BITS = (2 * 5 + 2) * 64   # float64 head of the synthetic states


def _server(syn, gen, r=4):
    return ServerState(syn.make_state(r, gen))


def test_keep_counts_from_plan_or_option():
    sel = np.ones(4, bool)
    plan = Allocation(sel, sel * 1.0, sel * 0.1, 0.0, True, 0, "",
                      directives=Directives(sparsity=SparsityDirective(np.array([1.0, 0.5, 0.3, 0.01]))))
    assert keep_counts(plan, [1, 2, 3], 8, 1.0) == {1: 4, 2: 3, 3: 1}    # ceil(0.3 * 8) = 3, at least 1
    assert keep_counts(None, [0, 1], 8, 0.25) == {0: 2, 1: 2}
    assert keep_counts(Allocation(sel, sel * 1.0, sel * 0.1, 0.0, True, 0, ""), [0], 8, 0.5) == {0: 4}


def test_payload_bits_by_hand(syn, gen):
    ctx = syn.context([4, 4])
    st = syn.make_state(4, gen)
    # SOFT: m (d + n) q per matrix + r-bit mask per matrix + head; layers (d, n) = (6, 5), (7, 5)
    soft = Soft({"keep_ratio": 0.5}, context=ctx)
    assert soft.uplink_bits(syn.update(0, st, 10, soft_keep=2)) == 2 * (11 + 12) * 32 + 2 * 4 + HEAD_BITS
    comb = Soft({"index_coding": "combinatorial"}, context=ctx)   # ceil(log2 C(4, 2)) = 3 bits per matrix
    assert comb.uplink_bits(syn.update(0, st, 10, soft_keep=2)) == 2 * 23 * 32 + 2 * 3 + HEAD_BITS
    # naive top-k: A (4x5=20), B (6x4=24), A (20), B (7x4=28); half kept; ceil(log2 N) = 5 bits each
    topk = TopkLoRA({"keep_ratio": 0.5}, context=ctx)
    assert topk.uplink_bits(syn.update(0, st, 10, topk_ratio=0.5)) == (10 + 12 + 10 + 14) * (32 + 5) + HEAD_BITS
    # SVD oracle: m (d + n) values per matrix, no index bits
    svd = SvdLoRA({"keep_ratio": 0.5}, context=ctx)
    assert svd.uplink_bits(syn.update(0, st, 10, svd_keep=2)) == 2 * 23 * 32 + HEAD_BITS
    # planned bits of SOFT use the option's ratio
    up, _ = soft.planned_bits(ServerState(st), 3)
    assert up.tolist() == [2 * 23 * 32 + 8 + HEAD_BITS] * 3


def _updates(syn, gen, r, key, ms):
    return [syn.update(k, syn.make_state(r, gen), 10 * (k + 1), **{key: m}) for k, m in enumerate(ms)]


def test_soft_full_keep_equals_fedit_and_partial_keep_matches_the_pure_rule(syn, gen):
    ctx = syn.context([4, 4, 4])
    server = _server(syn, gen)
    ups = _updates(syn, gen, 4, "soft_keep", [4, 4, 4])
    soft = Soft({"orthonormal_init": False}, context=ctx)
    new, rep = soft.aggregate(0, server, ups, {0, 1, 2})
    ref, _ = FedIT(context=ctx).aggregate(0, server, ups, {0, 1, 2})
    for k in ref.tensors:
        assert torch.allclose(new.tensors[k], ref.tensors[k])
    assert rep["soft_sparsification_error"] == 0.0 and rep["aggregated"] == 3
    # partial: device 2 lost, devices 0, 1 keep 1 and 3 components
    ups = _updates(syn, gen, 4, "soft_keep", [1, 3, 2])
    new, rep = soft.aggregate(0, server, ups, {0, 1})
    g = server.tensors
    for prefix in syn.LAYERS:
        a, b = f"{prefix}.lora_A.weight", f"{prefix}.lora_B.weight"
        sel = [soft_select(g[a], g[b], u.state[a], u.state[b], int(u.memo["soft_keep"])) for u in ups[:2]]
        A, B = partial_rank_aggregate(g[a], g[b], [s[0] for s in sel], [s[1] for s in sel],
                                      [s[2] for s in sel], [10, 20])
        assert torch.allclose(new.tensors[a], A) and torch.allclose(new.tensors[b], B)
    # sparsification error from the scores: sum_k p_k^2 scale^2 sum_{i not kept} s_i^2
    scale2 = (syn.ALPHA / 4) ** 2
    expect = 0.0
    for pk, u in zip([1 / 3, 2 / 3], ups[:2]):
        for prefix in syn.LAYERS:
            a, b = f"{prefix}.lora_A.weight", f"{prefix}.lora_B.weight"
            _, _, mask, s, _, _ = soft_select(g[a], g[b], u.state[a], u.state[b], int(u.memo["soft_keep"]))
            expect += pk**2 * scale2 * float((s[~mask] ** 2).sum())
    assert rep["soft_sparsification_error"] == pytest.approx(expect, rel=1e-12)
    assert {"cross_cov_fro", "orth_err_a", "orth_err_b", "score_sv_rel_err", "soft_rank"} <= rep.keys()


def test_soft_error_feedback_residual_is_the_unsent_update_and_is_reused(syn, gen):
    ctx = syn.context([4, 4])
    soft = Soft({"error_feedback": True, "orthonormal_init": False}, context=ctx)
    server = soft.init_state(syn.make_state(4, gen))
    assert server.extra == {"residual": {}}
    ups = _updates(syn, gen, 4, "soft_keep", [2, 1])
    new, _ = soft.aggregate(0, server, ups, {0})          # device 1 lost: its residual is kept anyway
    g = server.tensors
    for u in ups:
        res = new.extra["residual"][u.device]
        for prefix in syn.LAYERS:
            a, b = f"{prefix}.lora_A.weight", f"{prefix}.lora_B.weight"
            _, _, mask, _, _, _ = soft_select(g[a], g[b], u.state[a], u.state[b], int(u.memo["soft_keep"]))
            # residual + sent = full update
            sent_a = torch.where(mask[:, None], u.state[a] - g[a], torch.zeros_like(g[a]))
            assert torch.allclose(res[a] + sent_a, u.state[a] - g[a])
            assert torch.all(res[b][:, mask] == 0)
    # next round: device 0's selection uses local + residual
    ups2 = _updates(syn, gen, 4, "soft_keep", [2])
    newer, _ = soft.aggregate(1, new, ups2, {0})
    g2, res0 = new.tensors, new.extra["residual"][0]
    for prefix in syn.LAYERS:
        a, b = f"{prefix}.lora_A.weight", f"{prefix}.lora_B.weight"
        A_c, B_c, mask, _, rA, _ = soft_select(g2[a], g2[b], ups2[0].state[a], ups2[0].state[b], 2, res0[a], res0[b])
        assert torch.allclose(newer.extra["residual"][0][a], rA)
        assert torch.allclose(newer.tensors[a], torch.where(mask[:, None], A_c, g2[a]))


def test_naive_topk_zeroes_unsent_entries_by_value(syn, gen):
    ctx = syn.context([4, 4])
    server = _server(syn, gen)
    ups = _updates(syn, gen, 4, "topk_ratio", [1.0, 1.0])
    for cls in (TopkLoRA, ForgivingTopkLoRA):
        new, _ = cls(context=ctx).aggregate(0, server, ups, {0, 1})
        ref, _ = FedIT(context=ctx).aggregate(0, server, ups, {0, 1})
        for k in ref.tensors:
            assert torch.allclose(new.tensors[k], ref.tensors[k])
    ups = _updates(syn, gen, 4, "topk_ratio", [0.25, 0.25])
    new, _ = TopkLoRA(context=ctx).aggregate(0, server, ups, {0, 1})
    a = next(iter(syn.LAYERS)) + ".lora_A.weight"
    # by hand: each device's A keeps its ceil(0.25 * 20) = 5 largest |values|, the rest is 0; FedAvg 1/3, 2/3
    expect = torch.zeros_like(server.tensors[a])
    for w, u in zip([1 / 3, 2 / 3], ups):
        x = u.state[a]
        thr = torch.sort(x.abs().reshape(-1), descending=True).values[4]
        expect += w * torch.where(x.abs() >= thr, x, torch.zeros_like(x))
    assert torch.allclose(new.tensors[a], expect)
    assert (new.tensors[a] == 0).sum() >= 20 - 10


def test_forgiving_topk_keeps_global_entries(syn, gen):
    ctx = syn.context([4, 4])
    server = _server(syn, gen)
    ups = _updates(syn, gen, 4, "topk_ratio", [0.1, 0.1])
    new, rep = ForgivingTopkLoRA(context=ctx).aggregate(0, server, ups, {0})
    a = next(iter(syn.LAYERS)) + ".lora_A.weight"
    changed = (new.tensors[a] != server.tensors[a]).sum().item()
    assert changed == 2      # ceil(0.1 * 20) entries of device 0's A
    assert 0 < rep["topk_dropped_energy"] < 1


def test_svd_full_keep_equals_flexlora_and_truncation_error_reported(syn, gen):
    ctx = syn.context([4, 4])
    svd, flex = SvdLoRA(context=ctx), FlexLoRA(context=ctx)
    server = svd.init_state(syn.make_state(4, gen))
    ups = _updates(syn, gen, 4, "svd_keep", [4, 4])
    new, rep = svd.aggregate(0, server, ups, {0, 1})
    ref, _ = flex.aggregate(0, server, ups, {0, 1})
    for p in syn.LAYERS:
        assert torch.allclose(new.extra["delta"][p], ref.extra["delta"][p])
    assert rep["svd_truncation_error"] == pytest.approx(0.0, abs=1e-20)
    ups = _updates(syn, gen, 4, "svd_keep", [1, 2])
    new, rep = svd.aggregate(0, server, ups, {0, 1})
    p = next(iter(syn.LAYERS))
    expect = 0
    for w, u in zip([1 / 3, 2 / 3], ups):
        E = syn.effective(u.state, p)
        U, S, Vh = torch.linalg.svd(E)
        m = u.memo["svd_keep"]
        expect = expect + w * U[:, :m] @ torch.diag(S[:m]) @ Vh[:m]
    assert torch.allclose(new.extra["delta"][p], expect)
    assert rep["svd_truncation_error"] > 0


def test_orth_penalty_on_a_module_sums_layers():
    class Layer(nn.Module):
        def __init__(self, d, r, n):
            super().__init__()
            self.lora_A = nn.Linear(n, r, bias=False)
            self.lora_B = nn.Linear(r, d, bias=False)

    model = nn.Module()
    model.q, model.v = Layer(6, 3, 5), Layer(7, 3, 5)
    expect = sum(orthogonality_penalty(m.lora_A.weight, m.lora_B.weight) for m in (model.q, model.v))
    assert torch.allclose(OrthPenalty(0.5)(model), 0.5 * expect)


def test_soft_init_makes_a_rows_orthonormal_and_hints_are_consistent(syn, gen):
    ctx = syn.context([4, 4])
    assert Soft(context=ctx).options.orthonormal_init is False      # papers.md has no QR init
    soft = Soft({"keep_ratio": 0.5, "orthonormal_init": True}, context=ctx)
    server = soft.init_state(syn.make_state(4, gen))
    for p in syn.LAYERS:
        A = server.tensors[f"{p}.lora_A.weight"]
        assert torch.allclose(A @ A.T, torch.eye(4, dtype=A.dtype), atol=1e-12)
    hints = soft.planner_hints(server)
    assert hints.kinds() == Soft.provides_hints
    h = hints.soft_payload
    assert h.rank == 4
    st = server.tensors
    assert [soft.uplink_bits(syn.update(0, st, 1, soft_keep=m)) for m in range(5)] == h.payload_bits.tolist()
    # no device seen yet: every row is the global factors' relative curve, energy = the global one
    assert h.error_curve.shape == (2, 5) and np.allclose(h.error_curve[:, 0], 1.0) and np.all(h.error_curve[:, -1] == 0)
    assert np.allclose(h.error_curve[0], h.error_curve[1]) and h.error_energy[0] == h.error_energy[1] > 0
    zero_b = ServerState(syn.make_state(4, gen, zero_b=True))
    assert soft.planner_hints(zero_b).soft_payload.error_curve is None


def test_soft_hints_carry_each_devices_own_curve_from_its_last_delivered_factors(syn, gen):
    ctx = syn.context([4, 4, 4])
    soft = Soft({"orthonormal_init": False}, context=ctx)
    server = soft.init_state(syn.make_state(4, gen))
    ups = _updates(syn, gen, 4, "soft_keep", [2, 3, 1])
    new, _ = soft.aggregate(0, server, ups, {0, 1})          # device 2 lost: not known yet
    scale2 = (syn.ALPHA / 4) ** 2
    h = soft.planner_hints(new).soft_payload
    for k in (0, 1):  # by hand: scale^2 * sum over layers of the tail sums of the sorted squared scores
        expect = np.zeros(5)
        for prefix in syn.LAYERS:
            a, b = f"{prefix}.lora_A.weight", f"{prefix}.lora_B.weight"
            s2 = np.sort((torch.linalg.vector_norm(ups[k].state[b], dim=0)
                          * torch.linalg.vector_norm(ups[k].state[a], dim=1)).numpy() ** 2)[::-1]
            expect += scale2 * np.array([s2[m:].sum() for m in range(5)])
        assert h.error_energy[k] == pytest.approx(expect[0], rel=1e-12)
        np.testing.assert_allclose(h.error_curve[k], expect / expect[0], rtol=1e-12)
    assert not np.allclose(h.error_curve[0], h.error_curve[1])
    # device 2 (never delivered): the global factors' relative curve and the mean energy of 0 and 1
    assert h.error_energy[2] == pytest.approx(0.5 * (h.error_energy[0] + h.error_energy[1]))
    glob = soft.planner_hints(ServerState(new.tensors)).soft_payload.error_curve[0]
    np.testing.assert_allclose(h.error_curve[2], glob)
    # a later round overwrites device 0's curve only
    newer, _ = soft.aggregate(1, new, _updates(syn, gen, 4, "soft_keep", [4]), {0})
    h2 = soft.planner_hints(newer).soft_payload
    assert h2.error_energy[1] == h.error_energy[1] and h2.error_energy[0] != h.error_energy[0]
