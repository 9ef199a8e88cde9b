"""Server optimisers (Reddi et al. 2021, Algorithm 2; FedAvgM) by hand, FedProx's proximal
term by hand, and a federated run with a server optimiser that resumes exactly."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from airtune.cli import main
from airtune.strategies.server_opt import ServerOptimizer, server_step
from airtune.training.local import OptimConfig, make_optimizer, proximal_term, train_steps


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def test_none_keeps_the_aggregate():
    agg = {"a": t(1.0)}
    out, mom = server_step(ServerOptimizer("none"), {"a": t(0.0)}, agg, {})
    assert out["a"].item() == 1.0 and mom == {}


def test_fedavgm_two_steps_by_hand():
    opt = ServerOptimizer("fedavgm", lr=0.5, momentum=0.9)
    x1, mom = server_step(opt, {"a": t(1.0)}, {"a": t(3.0)}, {})        # delta 2, m = 2, x = 1 + 0.5 * 2
    assert x1["a"].item() == 2.0 and mom["m"]["a"].item() == 2.0
    x2, mom = server_step(opt, x1, {"a": t(2.5)}, mom)                   # delta 0.5, m = 1.8 + 0.5 = 2.3
    assert mom["m"]["a"].item() == pytest.approx(2.3) and x2["a"].item() == pytest.approx(2.0 + 0.5 * 2.3)


def test_fedadam_and_fedyogi_first_step_by_hand():
    tau, b1, b2, lr = 1e-3, 0.9, 0.99, 0.1
    for name in ("fedadam", "fedyogi"):
        opt = ServerOptimizer(name, lr=lr, beta1=b1, beta2=b2, tau=tau)
        out, mom = server_step(opt, {"a": t(0.0)}, {"a": t(0.5)}, {})
        m = (1 - b1) * 0.5
        v0, d2 = tau ** 2, 0.25
        v = b2 * v0 + (1 - b2) * d2 if name == "fedadam" else v0 - (1 - b2) * d2 * math.copysign(1.0, v0 - d2)
        assert mom["m"]["a"].item() == pytest.approx(m) and mom["v"]["a"].item() == pytest.approx(v)
        assert out["a"].item() == pytest.approx(lr * m / (math.sqrt(v) + tau))


def test_yogi_grows_v_more_slowly_than_adam_when_updates_shrink():
    """Yogi's additive rule: after a large update, a small one decreases v by at most (1-b2)d^2."""
    prev, adam, yogi = {"a": t(0.0)}, {}, {}
    a_opt, y_opt = ServerOptimizer("fedadam"), ServerOptimizer("fedyogi")
    for delta in (1.0, 0.01):
        _, adam = server_step(a_opt, prev, {"a": t(delta)}, adam)
        _, yogi = server_step(y_opt, prev, {"a": t(delta)}, yogi)
    assert yogi["v"]["a"].item() > adam["v"]["a"].item()


def test_pure_and_passes_through_new_or_reshaped_keys():
    prev = {"a": t(1.0, 2.0), "b": t(1.0)}
    agg = {"a": t(2.0, 2.0), "b": t(1.0, 1.0), "c": t(5.0)}
    out, _ = server_step(ServerOptimizer("fedadam"), prev, agg, {})
    assert prev["a"].tolist() == [1.0, 2.0] and agg["a"].tolist() == [2.0, 2.0]
    assert out["b"].tolist() == [1.0, 1.0] and out["c"].item() == 5.0
    assert out["a"][1].item() == 2.0    # zero pseudo-gradient: no move


class Quadratic(nn.Module):
    """loss = 0.5 * ||w - target||^2 (its gradient is w - target), as a model with a .loss."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(t(1.0))

    def forward(self, target):
        return SimpleNamespace(loss=0.5 * ((self.w - target) ** 2).sum())


def test_fedprox_term_by_hand():
    assert proximal_term([t(3.0, 1.0)], [t(1.0, 1.0)], 0.5).item() == pytest.approx(0.5 * 0.5 * 4.0)
    m = Quadratic()
    cfg = OptimConfig(lr=0.1, optimizer="sgd", max_grad_norm=None, proximal_mu=2.0)
    opt = make_optimizer({"w": m.w}, cfg, lambda k: False)
    train_steps(m, [{"target": t(0.0)}, {"target": t(0.0)}], opt, cfg)
    # step 1: grad = w - 0 + mu (w - w0) = 1 + 0 -> w = 0.9; step 2: grad = 0.9 + 2 (0.9 - 1) = 0.7 -> 0.83
    assert m.w.item() == pytest.approx(0.83)


@pytest.mark.slow
def test_fedadam_run_resumes_exactly(glue_dir, tmp_path):
    from airtune.config import load_config
    from airtune.experiment import rundir
    from airtune.experiment.runner import run_experiment
    from tests.conftest import tiny_overrides

    overrides = [*tiny_overrides(glue_dir, rounds=3, **{"train.local_steps": 2, "train.num_threads": 1}),
                 "strategy.server_optimizer.name=fedadam", "strategy.server_optimizer.lr=0.01", "train.proximal_mu=0.1"]
    before = torch.get_num_threads()
    try:
        ref = tmp_path / "ref"
        assert main(["run", "--quiet", "--out", str(ref), *overrides]) == 0
        out = tmp_path / "run"
        cfg = load_config(None, overrides)
        rundir.prepare(cfg, out)
        run_experiment(cfg, out, stop_after_round=1)
        assert main(["run", "--quiet", "--resume", str(out)]) == 0
    finally:
        torch.set_num_threads(before)

    def rows(p):
        return [{k: v for k, v in json.loads(line).items() if k != "wall_time_s"}
                for line in (p / "metrics.jsonl").read_text().splitlines()]
    assert rows(out) == rows(ref) and rows(ref)[-1]["accuracy"] is not None
