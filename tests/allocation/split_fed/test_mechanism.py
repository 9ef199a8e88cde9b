"""Paper 1's mechanism on real SST-2 payloads (issue 14, item 5): allocation-only runs of the
``sst2-split-lyapunov`` config, no training. Every round draws the run's channel, the planner
plans with split federated LoRA's planned traffic (MiniLM-L6 hidden size, the real sentences'
mean length), the runner's ``price_round`` charges the plan, and the measured energy feeds the
queues, as in ``airtune run``.

- The number of scheduled devices rises over the rounds as omega_t grows (geometric weights),
  and does not with uniform weights (the control).
- The calibrated budget binds (fewer devices than the unconstrained policy) and, once the queues
  settle, every device's long-term energy is within 5 % of it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from airtune.allocation.planner import RoundOutcome
from airtune.config import load_config
from airtune.experiment.runner import build_planner, price_round, round_inputs
from airtune.experiment.seeds import rng
from airtune.experiment.setup import build
from airtune.wireless.channel import step_channel

pytestmark = pytest.mark.slow
CONFIG = Path(__file__).resolve().parents[3] / "configs" / "split" / "sst2-split-lyapunov.yaml"
ROUNDS = 100


def simulate(s, rounds: int) -> dict[str, np.ndarray]:
    """Allocation-only rounds of setup ``s``: devices scheduled, energy (rounds, K), budget, weight."""
    cfg = s.cfg
    planner = build_planner(s)
    server = s.strategy.init_state(s.initial_state)
    samples = np.asarray(s.strategy.context.samples_per_round, dtype=float)
    rows: dict[str, list] = {"n": [], "energy": [], "budget": [], "weight": [], "free_n": []}
    for t in range(rounds):
        ch = step_channel(s.channel, rng(cfg.seed, "channel", t), cfg.wireless.fading)
        x = round_inputs(s, server, t, ch)
        plan = planner.plan(x)
        sel = plan.selected
        radio = price_round(s, ch, plan, np.where(sel, x.uplink_bits, 0.0), np.where(sel, x.downlink_bits, 0.0),
                            np.where(sel, samples, 0.0), t)
        rep = planner.observe(x, plan, RoundOutcome(radio.delivered, radio.success_prob, radio.cost.energy_j,
                                                    radio.cost.latency_s, x.uplink_bits, radio.cost.round_latency_s))
        rows["n"].append(int(sel.sum()))
        rows["energy"].append(np.where(sel, radio.cost.energy_j, 0.0))
        for key, name in (("budget", "lyap_budget_j"), ("weight", "lyap_weight"), ("free_n", "lyap_unconstrained_N")):
            rows[key].append(rep[name])
    return {k: np.asarray(v) for k, v in rows.items()}


@pytest.fixture(scope="module")
def runs(glue_dir):
    cfg = load_config(CONFIG, [f"data.dir={glue_dir}", f"rounds={ROUNDS}", "data.train_subset=1000",
                               "data.test_subset=50", "train.num_threads=1"])
    s = build(cfg)
    out = {}
    for shape in ("geometric", "uniform"):
        opts = {**cfg.allocation.options, "weights": shape}
        c = cfg.model_copy(update={"allocation": cfg.allocation.model_copy(update={"options": opts})})
        out[shape] = simulate(dataclasses.replace(s, cfg=c), ROUNDS)
    return out


def thirds(n: np.ndarray) -> tuple[float, float]:
    k = n.size // 3
    return float(n[:k].mean()), float(n[-k:].mean())


def test_scheduled_devices_rise_with_the_round_weight(runs):
    geo, uni = runs["geometric"], runs["uniform"]
    assert np.all(np.diff(geo["weight"]) > 0) and geo["weight"][0] == pytest.approx(0.1)
    first, last = thirds(geo["n"])
    u_first, u_last = thirds(uni["n"])
    assert last - first >= 0.3, (first, last)
    assert (last - first) - (u_last - u_first) >= 0.3, ((first, last), (u_first, u_last))
    assert np.corrcoef(geo["n"], geo["weight"])[0, 1] > 0.1


def test_calibrated_budget_binds_and_is_met_once_queues_settle(runs):
    r = runs["geometric"]
    budget = r["budget"][-1]
    assert budget > 0 and abs(r["budget"][ROUNDS // 4:] / budget - 1).max() < 0.05   # the calibration settles
    assert r["n"].mean() <= r["free_n"].mean() - 1.0          # it binds: fewer than the unconstrained policy
    settled = r["energy"][ROUNDS // 4:].mean(axis=0)           # (K,) J per round after the transient
    assert settled.max() <= 1.05 * budget, settled.max() / budget
    assert settled.sum() >= 0.8 * budget * settled.size       # and is not met by idling
