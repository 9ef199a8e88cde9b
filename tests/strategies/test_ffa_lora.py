"""FFA-LoRA: frozen shared A, only B aggregated and communicated."""

from __future__ import annotations

import pytest
import torch

from airtune.experiment.seeds import int_seed
from airtune.lora.ops import ffa_init_A
from airtune.strategies.base import tensor_bits
from airtune.strategies.ffa_lora import FFALoRA

RANKS = [2, 4, 8, 4]


def setup(syn, gen, ranks=RANKS, seed=3):
    s = FFALoRA(context=syn.context(ranks, seed=seed))
    return s, s.init_state(syn.make_state(max(ranks), gen, zero_b=True))


def trained(task, gen):
    """The device trained B and the head; A is untouched."""
    out = {k: v.clone() for k, v in task.state.items()}
    for k in out:
        if ".lora_A." not in k:
            out[k] += torch.randn(out[k].shape, generator=gen, dtype=out[k].dtype)
    return out


def test_A_is_the_shared_seeded_init_and_frozen_on_devices(syn, gen):
    s, server = setup(syn, gen)
    for i, (p, (_d, n)) in enumerate(syn.LAYERS.items()):
        ref = ffa_init_A((8, n), int_seed(3, "strategy", 0, i), torch.float64)
        assert torch.equal(server.tensors[f"{p}.lora_A.weight"], ref)
        assert not server.tensors[f"{p}.lora_B.weight"].any()
    for task in s.configure_round(0, server, [0, 2], {0: 0, 2: 0}, 1):
        r = RANKS[task.device]
        assert task.freeze == ("lora_A",) and task.adapter == f"r{r}"
        for p in syn.LAYERS:
            assert torch.equal(task.state[f"{p}.lora_A.weight"], server.tensors[f"{p}.lora_A.weight"][:r])


def test_aggregate_keeps_A_and_is_exact(syn, gen):
    s, server = setup(syn, gen)
    tasks = s.configure_round(0, server, [0, 1, 2], {0: 0, 1: 0, 2: 0}, 1)
    ups = [syn.update(t.device, trained(t, gen), n) for t, n in zip(tasks, [10, 30, 60])]
    new, report = s.aggregate(0, server, ups, delivered={0, 1, 2})
    for p in syn.LAYERS:
        A = server.tensors[f"{p}.lora_A.weight"]
        assert torch.equal(new.tensors[f"{p}.lora_A.weight"], A)  # unchanged
        glob = new.tensors[f"{p}.lora_B.weight"] @ A
        ref = sum(w * syn.effective(u.state, p) for w, u in zip([0.1, 0.3, 0.6], ups))
        torch.testing.assert_close(glob, ref)  # no cross-covariance term
    assert report["cross_cov_fro"] < 1e-12 and report["aggregated"] == 3


def test_payloads_exclude_A(syn, gen):
    s, server = setup(syn, gen, ranks=[4, 4])
    (task,) = s.configure_round(0, server, [0], {0: 0}, 1)
    up = syn.update(0, trained(task, gen), 10)
    for payload in (s.downlink_payload(task), s.uplink_payload(up)):
        assert not any(".lora_A." in k for k in payload) and any(".lora_B." in k for k in payload)
    full, sent = tensor_bits(up.state), tensor_bits(s.uplink_payload(up))
    a_bits = sum(v.numel() * 64 for k, v in up.state.items() if ".lora_A." in k)
    assert sent == full - a_bits


def test_changed_A_is_an_error(syn, gen):
    s, server = setup(syn, gen)
    (task,) = s.configure_round(0, server, [1], {1: 0}, 1)
    bad = trained(task, gen)
    bad[f"{next(iter(syn.LAYERS))}.lora_A.weight"] += 1.0
    with pytest.raises(RuntimeError, match="frozen A"):
        s.aggregate(0, server, [syn.update(1, bad, 5)], {1})


def test_single_participant_round_trip(syn, gen):
    s, server = setup(syn, gen)
    (task,) = s.configure_round(0, server, [1], {1: 0}, 1)
    mine = trained(task, gen)
    new, _ = s.aggregate(0, server, [syn.update(1, mine, 5)], {1})
    (back,) = s.configure_round(1, new, [1], {1: 0}, 1)
    for k, v in mine.items():
        torch.testing.assert_close(back.state[k], v)
