"""FLoRA: exact stacking, merge into the base weights, fresh adapters, growing downlink."""

from __future__ import annotations

import torch

from airtune.experiment.checkpoint import load_checkpoint, save_checkpoint
from airtune.strategies.base import ServerState, tensor_bits
from airtune.strategies.flora import FLoRA

RANKS = [2, 4, 8, 4]


def trained(task, gen):
    out = {k: v.clone() for k, v in task.state.items()}
    for k in out:
        out[k] += torch.randn(out[k].shape, generator=gen, dtype=out[k].dtype)
    return out


def run_round(s, server, rnd, devices, gen, syn):
    tasks = s.configure_round(rnd, server, [k for k, _ in devices], {k: 0 for k, _ in devices}, 1)
    ups = [syn.update(t.device, trained(t, gen), n) for t, (_, n) in zip(tasks, devices)]
    new, report = s.aggregate(rnd, server, ups, {k for k, _ in devices})
    return tasks, ups, new, report


def test_fresh_adapter_every_round(syn, gen):
    s = FLoRA(context=syn.context(RANKS, seed=5))
    server = s.init_state(syn.make_state(8, gen, zero_b=True))
    t0 = s.configure_round(0, server, [0, 2], {0: 0, 2: 0}, 1)
    t1 = s.configure_round(1, server, [0, 2], {0: 0, 2: 0}, 1)
    for task in t0:
        r = RANKS[task.device]
        assert task.info["adapter"] == f"r{r}" and task.info["base_delta"] is None
        for p, (d, n) in syn.LAYERS.items():
            A, B = task.state[f"{p}.lora_A.weight"], task.state[f"{p}.lora_B.weight"]
            assert A.shape == (r, n) and A.abs().max() <= 1 / n**0.5 and A.any() and not B.any()
    a = f"{next(iter(syn.LAYERS))}.lora_A.weight"
    again = s.configure_round(0, server, [0], {0: 0}, 1)[0]
    assert torch.equal(again.state[a], t0[0].state[a])          # seeded
    assert not torch.equal(t1[0].state[a], t0[0].state[a])       # a new draw next round


def test_merged_delta_is_exact_weighted_sum_and_accumulates(syn, gen):
    s = FLoRA(context=syn.context(RANKS))
    server = s.init_state(syn.make_state(8, gen, zero_b=True))
    _, ups0, s1, rep0 = run_round(s, server, 0, [(0, 10), (1, 30), (2, 60)], gen, syn)
    for p in syn.LAYERS:
        ref = sum(w * syn.effective(u.state, p) for w, u in zip([0.1, 0.3, 0.6], ups0))
        torch.testing.assert_close(s1.extra["merged"][p], ref)
        A_stk, B_stk = s1.extra["stack"][p]
        assert A_stk.shape[0] == 14 and B_stk.shape[1] == 14
    assert rep0["stack_rank"] == 14 and rep0["aggregated"] == 3
    tasks, ups1, s2, rep1 = run_round(s, s1, 1, [(1, 5), (3, 15)], gen, syn)
    assert all(t.info["base_delta"] is s1.extra["merged"] for t in tasks)
    for p in syn.LAYERS:
        ref = s1.extra["merged"][p] + sum(w * syn.effective(u.state, p) for w, u in zip([0.25, 0.75], ups1))
        torch.testing.assert_close(s2.extra["merged"][p], ref)
    assert rep1["stack_rank"] == 8 and s2.extra["merged_rank"] == 22


def test_downlink_charges_the_stack_and_grows_with_participants(syn, gen):
    s = FLoRA(context=syn.context(RANKS))
    server = s.init_state(syn.make_state(8, gen, zero_b=True))
    (first,) = s.configure_round(0, server, [1], {1: 0}, 1)
    head_bits = sum(v.numel() * 64 for k, v in first.state.items() if ".lora_" not in k)
    assert tensor_bits(s.downlink_payload(first)) == head_bits  # nothing merged yet
    bits = []
    for devices in ([(0, 10)], [(0, 10), (1, 10)], [(0, 10), (1, 10), (2, 10)]):
        _, _, new, _ = run_round(s, server, 0, devices, gen, syn)
        (task,) = s.configure_round(1, new, [3], {3: 0}, 1)
        stack_rank = sum(RANKS[k] for k, _ in devices)
        per_layer = sum(stack_rank * (d + n) for d, n in syn.LAYERS.values())
        assert tensor_bits(s.downlink_payload(task)) == head_bits + 64 * per_layer
        bits.append(tensor_bits(s.downlink_payload(task)))
    assert bits == sorted(bits) and len(set(bits)) == 3


def test_single_participant_round_trip_and_export(syn, gen):
    s = FLoRA(context=syn.context(RANKS))
    server = s.init_state(syn.make_state(8, gen, zero_b=True))
    _, (mine,), new, _ = run_round(s, server, 0, [(1, 40)], gen, syn)
    for p in syn.LAYERS:
        torch.testing.assert_close(new.extra["merged"][p], syn.effective(mine.state, p))
    task = s.global_task(new)
    assert task.info["base_delta"] is new.extra["merged"]
    assert not any(v.any() for k, v in task.state.items() if ".lora_" in k)
    rank, state = s.export_adapter(new)
    assert rank == 4  # merged_rank = 4 <= min(d, n)
    for p in syn.LAYERS:
        torch.testing.assert_close((syn.ALPHA / rank) * state[f"{p}.lora_B.weight"] @ state[f"{p}.lora_A.weight"],
                                   new.extra["merged"][p])


def test_server_state_survives_a_checkpoint(syn, gen, tmp_path):
    s = FLoRA(context=syn.context(RANKS))
    _, _, new, _ = run_round(s, s.init_state(syn.make_state(8, gen, zero_b=True)), 0, [(0, 1), (2, 3)], gen, syn)
    save_checkpoint(tmp_path, {"round": 0, "tensors": new.tensors, "extra": new.extra})
    ck = load_checkpoint(tmp_path)
    back = ServerState(ck["tensors"], ck["extra"])
    for p in syn.LAYERS:
        assert torch.equal(s.global_task(back).info["base_delta"][p], new.extra["merged"][p])
