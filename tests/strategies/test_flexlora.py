"""FlexLoRA: exact full-size aggregation of effective products, rank-r_k SVD redistribution."""

from __future__ import annotations

import torch

from airtune.strategies.flexlora import FlexLoRA

RANKS = [2, 4, 8, 4]


def aggregated(syn, gen, devices=((0, 10), (1, 30), (2, 60))):
    s = FlexLoRA(context=syn.context(RANKS))
    server = s.init_state(syn.make_state(8, gen, zero_b=True))
    ups = [syn.update(k, syn.make_state(RANKS[k], gen), n) for k, n in devices]
    new, report = s.aggregate(0, server, ups, delivered={k for k, _ in devices})
    return s, server, new, report, ups


def test_global_delta_is_weighted_sum_of_effective_products(syn, gen):
    s, _, new, report, ups = aggregated(syn, gen)
    for p in syn.LAYERS:
        ref = sum(w * syn.effective(u.state, p) for w, u in zip([0.1, 0.3, 0.6], ups))
        torch.testing.assert_close(new.extra["delta"][p], ref)
    for k in syn.HEAD:
        torch.testing.assert_close(new.tensors[k], sum(w * u.state[k] for w, u in zip([0.1, 0.3, 0.6], ups)))
    assert report["aggregated"] == 3 and report["global_rank"] == 5  # min(d, n) = 5 < 2 + 4 + 8
    assert 0 < report["energy_kept_min_rank"] < report["energy_kept_max_rank"] <= 1.0


def test_redistribution_is_rank_r_truncated_svd_of_the_d_by_n_delta(syn, gen):
    s, _, new, _, _ = aggregated(syn, gen)
    tasks = s.configure_round(1, new, [0, 1, 3], {0: 0, 1: 0, 3: 0}, 1)
    for task in tasks:
        r = RANKS[task.device]
        assert task.adapter == f"r{r}"
        for p, (d, n) in syn.LAYERS.items():
            A, B = task.state[f"{p}.lora_A.weight"], task.state[f"{p}.lora_B.weight"]
            assert A.shape == (r, n) and B.shape == (d, r)
            U, S, Vh = torch.linalg.svd(new.extra["delta"][p], full_matrices=False)
            q = min(r, S.numel())
            best = U[:, :q] @ torch.diag(S[:q]) @ Vh[:q]
            torch.testing.assert_close(syn.effective(task.state, p), best)
            # singular values live in B: A has orthonormal rows, B's columns have norms S / s
            torch.testing.assert_close(A[:q] @ A[:q].T, torch.eye(q, dtype=A.dtype))
            torch.testing.assert_close(B[:, :q].norm(dim=0), S[:q] / (syn.ALPHA / r))


def test_before_first_aggregation_devices_get_initial_A_and_zero_B(syn, gen):
    s = FlexLoRA(context=syn.context(RANKS))
    init = syn.make_state(8, gen, zero_b=True)
    server = s.init_state(init)
    (task,) = s.configure_round(0, server, [1], {1: 0}, 1)
    for p in syn.LAYERS:
        assert torch.equal(task.state[f"{p}.lora_A.weight"], init[f"{p}.lora_A.weight"][:4])
        assert not task.state[f"{p}.lora_B.weight"].any()
    assert s.export_adapter(server) is None


def test_single_participant_round_trip(syn, gen):
    s, _, new, _, (mine,) = aggregated(syn, gen, devices=((1, 40),))
    (task,) = s.configure_round(1, new, [1], {1: 0}, 1)
    for p in syn.LAYERS:
        torch.testing.assert_close(syn.effective(task.state, p), syn.effective(mine.state, p))


def test_evaluation_and_export_use_the_exact_delta(syn, gen):
    s, _, new, _, _ = aggregated(syn, gen)
    task = s.global_task(new)
    assert task.base_delta is new.extra["delta"] and task.adapter == "r8"
    assert not any(v.any() for k, v in task.state.items() if ".lora_" in k)  # zero adapter on top
    rank, state = s.export_adapter(new)
    assert rank == 5
    for p in syn.LAYERS:
        torch.testing.assert_close((syn.ALPHA / rank) * state[f"{p}.lora_B.weight"] @ state[f"{p}.lora_A.weight"],
                                   new.extra["delta"][p])
