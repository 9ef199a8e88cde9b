"""Heterogeneous-rank strategies on the real MiniLM through the engine: FFA-LoRA's A stays frozen,
only the task's adapter changes, FLoRA's merged base weights are applied, undone, rebuilt from the
server state alone, and match the exported PEFT adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from airtune.data.cache import TokenizedDataset, collate
from airtune.lora.adapters import (
    LoraSpec,
    base_weights,
    inject_lora,
    lora_pairs,
    save_adapter_state,
    set_base_weights,
    trainable_params,
    trainable_state,
)
from airtune.lora.ops_hetlora import hetlora_tail_penalty
from airtune.models.zoo import load_classifier, resolve_model
from airtune.strategies.base import ServerState, StrategyContext
from airtune.strategies.ffa_lora import FFALoRA
from airtune.strategies.flora import FLoRA
from airtune.strategies.hetlora import TailPenalty
from airtune.training.engine import ClientUpdate, Engine
from airtune.training.local import OptimConfig

SPEC = resolve_model("minilm-l6")
RANKS = np.array([2, 4, 4])
LORA = LoraSpec(4, 8.0, 0.0, ("query", "value"))


@pytest.fixture(scope="module")
def data() -> TokenizedDataset:
    g = torch.Generator().manual_seed(0)
    n, L = 24, 12
    ids = torch.randint(1000, 5000, (n, L), generator=g, dtype=torch.int32)
    ids[:, 0], ids[:, -1] = 101, 102
    return TokenizedDataset(ids, torch.full((n,), L, dtype=torch.int32), torch.randint(0, 2, (n,), generator=g),
                            torch.zeros(n, L, dtype=torch.int32), 0)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return inject_lora(load_classifier(SPEC, 2), LORA, SPEC.head_modules, ranks=RANKS.tolist())


def engine_for(model, data, strategy) -> Engine:
    heads = {k for k in trainable_state(model) if ".lora_" not in k}
    parts = [np.arange(0, 8), np.arange(8, 16), np.arange(16, 24)]
    return Engine(model, data, parts, batch_size=4, optim=OptimConfig(lr=1e-2), head_keys=heads)


def test_ffa_device_trains_B_and_head_but_not_A(model, data):
    s = FFALoRA(context=StrategyContext(RANKS, LORA, seed=1))
    model.set_adapter("r4")
    server = s.init_state(trainable_state(model))
    engine = engine_for(model, data, s)
    model.set_adapter("r4")
    other = {n: p.detach().clone() for n, p in model.named_parameters() if ".r4." in n}
    (task,) = s.configure_round(0, server, [0], {0: 5}, steps=3)   # device 0 has rank 2
    up = engine.run_one(task)
    assert set(trainable_params(model)) == {k for k in up.state if ".lora_A." not in k}
    for k, v in up.state.items():
        if ".lora_A." in k:
            assert torch.equal(v, task.state[k])                      # frozen
        else:
            assert not torch.equal(v, task.state[k])                  # B and head trained
    assert all(torch.equal(p, other[n]) for n, p in model.named_parameters() if ".r4." in n)
    new, _ = s.aggregate(0, server, [up], {0})
    assert all(torch.equal(new.tensors[k], server.tensors[k]) for k in new.tensors if ".lora_A." in k)


def test_tail_penalty_of_the_active_adapter(model):
    model.set_adapter("r4")
    params = trainable_params(model)
    ref = sum(hetlora_tail_penalty(params[a], params[b], 0.5) for a, b in lora_pairs(params).values())
    torch.testing.assert_close(TailPenalty(0.5, 2.0)(model), 2.0 * ref)


def logits(model, data):
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in collate(data, np.arange(8)).items() if k != "labels"}).logits


def test_flora_base_weights_applied_undone_rebuilt_and_exported(model, data, tmp_path):
    from peft import PeftModel

    s = FLoRA(context=StrategyContext(RANKS, LORA, seed=2))
    model.set_adapter("r4")
    server = s.init_state(trainable_state(model))
    engine = engine_for(model, data, s)
    prefixes = list(lora_pairs(server.tensors))
    w0 = base_weights(model, prefixes)
    g = torch.Generator().manual_seed(3)
    tasks = s.configure_round(0, server, [0, 1], {0: 1, 1: 2}, steps=1)
    ups = [ClientUpdate(t.device, {k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in t.state.items()},
                        10, 0.0, t.memo) for t in tasks]
    server, _ = s.aggregate(0, server, ups, {0, 1})

    engine.load_task(s.global_task(server))                           # evaluation: W0 + merged
    merged = server.extra["merged"]
    for p, w in base_weights(model, prefixes).items():
        torch.testing.assert_close(w, w0[p] + merged[p])
    out = logits(model, data)

    (task,) = s.configure_round(1, server, [2], {2: 0}, steps=1)
    assert task.base_delta is merged
    engine.load_task(task)                                             # same merge: applied once, kept
    engine.load_task(FFALoRA(context=StrategyContext(RANKS, LORA)).global_task(
        FFALoRA(context=StrategyContext(RANKS, LORA)).init_state(trainable_state(model))))
    assert all(torch.equal(w, w0[p]) for p, w in base_weights(model, prefixes).items())  # undone

    torch.save({"tensors": server.tensors, "extra": server.extra}, tmp_path / "state.pt")
    ck = torch.load(tmp_path / "state.pt", weights_only=False)
    resumed = ServerState(ck["tensors"], ck["extra"])
    fresh_engine = engine_for(model, data, s)                          # a resumed run: new engine
    fresh_engine.load_task(s.global_task(resumed))
    torch.testing.assert_close(logits(model, data), out)

    rank, state = s.export_adapter(server)                             # the checkpoint's adapter
    save_adapter_state(model, state, rank, tmp_path / "adapter")
    torch.manual_seed(0)
    loaded = PeftModel.from_pretrained(load_classifier(SPEC, 2), str(tmp_path / "adapter"))
    torch.testing.assert_close(logits(loaded, data), out, rtol=1e-4, atol=1e-5)
    set_base_weights(model, w0)
