"""FLoRA: exact stacking, merge into the base weights, fresh adapters, downlink of the stacks not yet merged."""

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
        assert task.adapter == f"r{r}" and task.base_delta is None
        for p, (_d, n) in syn.LAYERS.items():
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
    # a rank-14 stack outweighs the (d, n) offsets of both layers: never sent, so not kept
    assert s1.extra["stacks"] == [] and s1.extra["stacks_from"] == 1
    assert rep0["stack_rank"] == 14 and rep0["aggregated"] == 3
    tasks, ups1, s2, rep1 = run_round(s, s1, 1, [(1, 5), (3, 15)], gen, syn)
    assert all(t.base_delta is s1.extra["merged"] for t in tasks)
    for p in syn.LAYERS:
        ref = s1.extra["merged"][p] + sum(w * syn.effective(u.state, p) for w, u in zip([0.25, 0.75], ups1))
        torch.testing.assert_close(s2.extra["merged"][p], ref)
    assert rep1["stack_rank"] == 8 and s2.extra["merged_rank"] == 22


def test_downlink_charges_the_stack_up_to_the_size_of_the_offset(syn, gen):
    s = FLoRA(context=syn.context(RANKS))
    server = s.init_state(syn.make_state(8, gen, zero_b=True))
    (first,) = s.configure_round(0, server, [1], {1: 0}, 1)
    head_bits = sum(v.numel() * 64 for k, v in first.state.items() if ".lora_" not in k)
    assert tensor_bits(s.downlink_payload(first)) == head_bits  # nothing merged yet
    bits = []
    for devices in ([(0, 10)], [(0, 10), (1, 10)], [(0, 10), (1, 10), (2, 10)]):
        _, _, new, _ = run_round(s, server, 0, devices, gen, syn)
        (task,) = s.configure_round(1, new, [3], {3: 0}, 1)
        stack_rank = sum(RANKS[k] for k, _ in devices)  # 2, 6, 14: the stack, then the (d, n) offset
        per_layer = sum(min(stack_rank * (d + n), d * n) for d, n in syn.LAYERS.values())
        assert tensor_bits(s.downlink_payload(task)) == head_bits + 64 * per_layer
        bits.append(tensor_bits(s.downlink_payload(task)))
    assert bits == [head_bits + 64 * (2 * 11 + 2 * 12), head_bits + 64 * (30 + 35), head_bits + 64 * (30 + 35)]


def test_downlink_charges_every_stack_a_device_has_not_merged(syn, gen):
    """Ranks 1, layers (d, n) = (6, 5), (7, 5): a rank-R stack costs 11 R and 12 R values, the
    offsets 30 and 35; one device (0) is delivered per round, so every stack has rank 1."""
    s = FLoRA(context=syn.context([1, 1, 1, 1]))
    server = s.init_state(syn.make_state(1, gen, zero_b=True))
    head = 64 * (2 * 5 + 2)
    stack, dense = 64 * (11 + 12), 64 * (30 + 35)      # bits of one rank-1 stack, of the offsets
    held_at = {}                                        # round -> merged at its start (what a device then holds)
    plan = [([0, 1], {0}), ([0, 2], {0}), ([0], {0}), ([0, 1, 2, 3], set()), ([0, 2], {0})]
    expected = [
        {0: head, 1: head},                             # nothing merged yet
        {0: head + stack, 2: head + stack},             # 2 never took part: the stack of round 0
        {0: head + stack},
        {0: head + stack,                               # took part every round: round 2's stack
         1: head + dense,                               # synced at round 0: 3 stacks (33, 36) > offsets
         2: head + 2 * stack,                           # synced at round 1, missed round 2: 2 stacks
         3: head + dense},                              # never took part: 3 stacks > offsets
        {0: head, 2: head},                             # round 3 lost every upload: nothing new
    ]
    for rnd, ((selected, delivered), want) in enumerate(zip(plan, expected)):
        held_at[rnd] = server.extra["merged"]
        planned = s.planned_bits(server, 4)[1]
        tasks = s.configure_round(rnd, server, selected, {k: 0 for k in selected}, 1)
        ups = [syn.update(t.device, trained(t, gen), 10) for t in tasks]
        charged = {u.device: s.downlink_bits(t, u) for t, u in zip(tasks, ups)}
        assert charged == want and all(planned[k] == b for k, b in charged.items())
        if rnd == 3:
            assert planned.tolist() == [want[k] for k in range(4)]
        for t in tasks:  # what the device holds plus what it receives rebuilds the current offset
            sync, got = int(server.extra["synced"][t.device]), s.downlink_payload(t)
            for p, (d, n) in syn.LAYERS.items():
                zero = torch.zeros(d, n, dtype=torch.float64)
                rebuilt = got.get(f"{p}.merged")
                if rebuilt is None:
                    held = zero if held_at[sync] is None else held_at[sync][p]
                    rebuilt = held + sum((got[f"{p}.stack{r}_B"] @ got[f"{p}.stack{r}_A"]
                                          for r in range(sync, rnd) if f"{p}.stack{r}_A" in got), zero)
                torch.testing.assert_close(rebuilt, zero if server.extra["merged"] is None else server.extra["merged"][p])
        server, _ = s.aggregate(rnd, server, ups, delivered)
        if rnd == 2:  # stacks 0..2 outweigh the offsets on both layers: round 0's is dropped
            assert [r for r, _ in server.extra["stacks"]] == [1, 2] and server.extra["stacks_from"] == 1
    assert server.extra["synced"].tolist() == [4, 3, 4, 3]


def test_single_participant_round_trip_and_export(syn, gen):
    s = FLoRA(context=syn.context(RANKS))
    server = s.init_state(syn.make_state(8, gen, zero_b=True))
    _, (mine,), new, _ = run_round(s, server, 0, [(1, 40)], gen, syn)
    for p in syn.LAYERS:
        torch.testing.assert_close(new.extra["merged"][p], syn.effective(mine.state, p))
    task = s.global_task(new)
    assert task.base_delta is new.extra["merged"]
    assert not any(v.any() for k, v in task.state.items() if ".lora_" in k)
    rank, state = s.export_adapter(new)
    assert rank == 4  # merged_rank = 4 <= min(d, n)
    for p in syn.LAYERS:
        torch.testing.assert_close((syn.ALPHA / rank) * state[f"{p}.lora_B.weight"] @ state[f"{p}.lora_A.weight"],
                                   new.extra["merged"][p])


def test_server_state_survives_a_checkpoint(syn, gen, tmp_path):
    s = FLoRA(context=syn.context(RANKS))
    _, _, new, _ = run_round(s, s.init_state(syn.make_state(8, gen, zero_b=True)), 0, [(0, 1), (2, 3)], gen, syn)
    _, _, new, _ = run_round(s, new, 1, [(0, 1)], gen, syn)  # a rank-2 stack: kept
    assert [r for r, _ in new.extra["stacks"]] == [1] and new.extra["synced"].tolist() == [1, 0, 0, 0]
    save_checkpoint(tmp_path, {"round": 0, "tensors": new.tensors, "extra": new.extra})
    ck = load_checkpoint(tmp_path)
    back = ServerState(ck["tensors"], ck["extra"])
    for p in syn.LAYERS:
        assert torch.equal(s.global_task(back).base_delta[p], new.extra["merged"][p])
    assert back.extra["synced"].dtype == new.extra["synced"].dtype and back.extra["stacks_from"] == 1
    for k in range(len(RANKS)):  # the same downlink after resume
        assert s.receive(back, k).keys() == s.receive(new, k).keys()
        assert all(torch.equal(v, s.receive(new, k)[name]) for name, v in s.receive(back, k).items())
    assert s.planned_bits(back, len(RANKS))[1].tolist() == s.planned_bits(new, len(RANKS))[1].tolist()
