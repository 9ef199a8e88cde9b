"""The engine (one shared model, state swapped per device) against the reference loop on a
freshly built model, and FedIT/FedAvg of one device against plain local training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from airtune.data.cache import tokenize
from airtune.data.glue import load_glue
from airtune.lora.adapters import LoraSpec, head_keys, inject_lora, trainable_params, trainable_state
from airtune.models.zoo import load_classifier, load_tokenizer, resolve_model
from airtune.strategies.base import ServerState
from airtune.strategies.fedit import FedIT
from airtune.training.engine import ClientTask, ClientUpdate, Engine, device_batches
from airtune.training.local import OptimConfig, make_optimizer, train_steps

SPEC = resolve_model("minilm-l6")
LORA = LoraSpec(rank=4, alpha=8.0, dropout=0.0, target_modules=("query", "value"))
OPT = OptimConfig(lr=1e-3, head_lr=2e-3)


@pytest.fixture(scope="module")
def small(glue_dir):
    train, _ = load_glue("sst2", glue_dir, seed=0, train_subset=64, test_subset=16)
    return tokenize(load_tokenizer(SPEC), train, max_length=32)


def fresh_model(seed: int = 0):
    torch.manual_seed(seed)
    return inject_lora(load_classifier(SPEC, 2), LORA, SPEC.head_modules)


def test_engine_matches_reference_loop_on_fresh_model(small):
    shared = fresh_model()
    init = trainable_state(shared)
    heads = set(head_keys(init))
    parts = [np.arange(0, 32), np.arange(32, 64)]
    engine = Engine(shared, small, parts, batch_size=8, optim=OPT, head_keys=heads)
    # Train device 0 first so the shared model carries another device's state before device 1.
    engine.run_one(ClientTask(0, init, steps=3, seed=11))
    ours = engine.run_one(ClientTask(1, init, steps=3, seed=7))

    ref_model = fresh_model()
    params = trainable_params(ref_model)
    opt = make_optimizer(params, OPT, lambda k: k in heads)
    torch.manual_seed(7)
    batches = device_batches(small, parts[1], 3, 8, np.random.default_rng(7))
    losses = train_steps(ref_model, batches, opt, OPT)
    ref = trainable_state(ref_model)
    assert ours.train_loss == pytest.approx(float(np.mean(losses)), rel=1e-6)
    for k in ref:
        torch.testing.assert_close(ours.state[k], ref[k], rtol=1e-5, atol=1e-6)
    # Training actually moved the LoRA B factors away from zero.
    assert any(ours.state[k].abs().sum() > 0 for k in ours.state if "lora_B" in k)


def test_fedit_of_one_device_equals_local_training(small):
    model = fresh_model()
    init = trainable_state(model)
    engine = Engine(model, small, [np.arange(64)], batch_size=8, optim=OPT, head_keys=set(head_keys(init)))
    update = engine.run_one(ClientTask(0, init, steps=2, seed=3))
    server, report = FedIT().aggregate(0, ServerState(init), [update], delivered={0})
    for k, v in update.state.items():
        assert torch.equal(server.tensors[k], v)
    assert report["aggregated"] == 1 and report["cross_cov_fro"] == 0.0


def test_lost_update_is_not_aggregated():
    a = {"x.lora_A.weight": torch.ones(2, 3), "x.lora_B.weight": torch.ones(3, 2)}
    b = {k: v * 3 for k, v in a.items()}
    ups = [ClientUpdate(0, a, 10, 0.5), ClientUpdate(1, b, 30, 0.5)]
    server, rep = FedIT().aggregate(0, ServerState(a), ups, delivered={0})
    assert torch.equal(server.tensors["x.lora_A.weight"], a["x.lora_A.weight"]) and rep["aggregated"] == 1
    server, rep = FedIT().aggregate(0, ServerState(a), ups, delivered={0, 1})
    # data-size weights 1/4, 3/4 -> 1*0.25 + 3*0.75 = 2.5
    torch.testing.assert_close(server.tensors["x.lora_A.weight"], torch.full((2, 3), 2.5))
    server, rep = FedIT().aggregate(0, ServerState(a), ups, delivered=set())
    assert server.tensors is a or torch.equal(server.tensors["x.lora_A.weight"], a["x.lora_A.weight"])
