"""Round-level learning-rate schedules (training/schedule.py) by hand, and their wiring: the task's
lr_scale reaches the optimiser; a scaled step equals a step at the scaled learning rate."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from airtune.training.engine import ClientTask
from airtune.training.local import OptimConfig, make_optimizer
from airtune.training.schedule import lr_factor, scheduled


def test_factors_by_hand():
    assert [lr_factor("constant", t, 4) for t in range(4)] == [1.0] * 4
    assert [lr_factor("linear", t, 4) for t in range(4)] == [1.0, 0.75, 0.5, 0.25]
    cos = [lr_factor("cosine", t, 4) for t in range(4)]
    assert cos == pytest.approx([1.0, (1 + math.sqrt(0.5)) / 2, 0.5, (1 - math.sqrt(0.5)) / 2])
    assert lr_factor("cosine", 39, 40) > 0                     # the last round still trains


def test_bad_rounds_and_names_are_refused():
    with pytest.raises(ValueError, match="round 4 of 4"):
        lr_factor("cosine", 4, 4)
    with pytest.raises(ValueError, match="train.lr_schedule = 'step'.*fix"):
        lr_factor("step", 0, 4)  # type: ignore[arg-type]


def test_scheduled_scales_every_task():
    tasks = [ClientTask(d, {}, steps=2, seed=d) for d in range(3)]
    assert scheduled(tasks, "constant", 3, 10) is tasks
    out = scheduled(tasks, "linear", 5, 10)
    assert [t.lr_scale for t in out] == [0.5] * 3 and [t.device for t in out] == [0, 1, 2]
    assert [t.lr_scale for t in tasks] == [1.0] * 3


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_make_optimizer_scales_body_and_head(optimizer):
    params = {"lora.w": nn.Parameter(torch.ones(2)), "classifier.w": nn.Parameter(torch.ones(2))}
    opt = make_optimizer(params, OptimConfig(lr=0.1, head_lr=0.4, optimizer=optimizer), lambda k: "classifier" in k,
                         lr_scale=0.25)
    assert sorted(g["lr"] for g in opt.param_groups) == pytest.approx([0.025, 0.1])
    ref = make_optimizer({k: nn.Parameter(p.detach().clone()) for k, p in params.items()},
                         OptimConfig(lr=0.025, head_lr=0.1, optimizer=optimizer), lambda k: "classifier" in k)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([g["lr"] for g in ref.param_groups])


def test_engine_step_with_lr_scale_equals_a_step_at_the_scaled_lr(tiny_model, tiny_sst2):
    import numpy as np

    from airtune.lora.adapters import head_keys, trainable_state
    from airtune.training.engine import Engine

    init = trainable_state(tiny_model)
    heads = set(head_keys(init))

    def run(lr, scale):
        optim = OptimConfig(lr=lr, head_lr=2 * lr, optimizer="sgd", max_grad_norm=None)
        eng = Engine(tiny_model, tiny_sst2, [np.arange(64)], 8, optim, heads)
        return eng.run_one(ClientTask(0, init, steps=2, seed=4, lr_scale=scale))

    half, ref, full = run(0.2, 0.5), run(0.1, 1.0), run(0.2, 1.0)
    for k in ref.state:
        torch.testing.assert_close(half.state[k], ref.state[k], rtol=1e-5, atol=1e-7)
    assert any(not torch.allclose(full.state[k], ref.state[k]) for k in ref.state)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_head_lr_zero_freezes_the_head_exactly(optimizer):
    """train.head_lr=0 (FedBABU): the head is not moved at all, not even by weight decay, while the
    body trains; head_lr=None still means the body's learning rate (0 is not read as 'unset')."""
    params = {"lora.w": nn.Parameter(torch.ones(3)), "classifier.w": nn.Parameter(torch.full((3,), 2.0))}
    opt = make_optimizer(params, OptimConfig(lr=0.1, head_lr=0.0, optimizer=optimizer, weight_decay=0.5),
                         lambda k: "classifier" in k)
    for _ in range(3):
        opt.zero_grad()
        (params["lora.w"].sum() * 2 + (params["classifier.w"] ** 2).sum()).backward()
        opt.step()
    assert torch.equal(params["classifier.w"].detach(), torch.full((3,), 2.0))
    assert not torch.equal(params["lora.w"].detach(), torch.ones(3))
    same = make_optimizer(params, OptimConfig(lr=0.1, head_lr=None, optimizer=optimizer), lambda k: "classifier" in k)
    assert [g["lr"] for g in same.param_groups] == [0.1, 0.1]


def test_lora_plus_moves_the_b_factors_at_ratio_times_lr():
    """train.lora_b_lr_ratio (LoRA+, Hayou et al. 2024): with SGD and one step, each B entry moves by
    ratio * lr * grad, each A entry by lr * grad, the head by head_lr * grad (hand-computed)."""
    a = nn.Parameter(torch.ones(2, 3))
    b = nn.Parameter(torch.zeros(3, 2))
    head = nn.Parameter(torch.ones(2))
    params = {"enc.query.lora_A.default.weight": a, "enc.query.lora_B.default.weight": b, "classifier.weight": head}
    opt = make_optimizer(params, OptimConfig(lr=0.1, head_lr=0.01, optimizer="sgd", lora_b_lr_ratio=16.0),
                         lambda k: "classifier" in k, lr_scale=0.5)
    (a.sum() + b.sum() + head.sum()).backward()     # every gradient is 1
    opt.step()
    torch.testing.assert_close(a.detach(), torch.full((2, 3), 1 - 0.05))
    torch.testing.assert_close(b.detach(), torch.full((3, 2), -16 * 0.05))
    torch.testing.assert_close(head.detach(), torch.full((2,), 1 - 0.005))
    plain = make_optimizer(params, OptimConfig(lr=0.1, optimizer="sgd"), lambda k: "classifier" in k)
    assert [g["lr"] for g in plain.param_groups] == [0.1, 0.1]    # ratio 1: the pre-LoRA+ groups exactly
