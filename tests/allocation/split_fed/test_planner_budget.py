"""The ``lyapunov`` planner's calibrated budget (papers.md §5) and its two long-term constraints:
one queue per device, or one on the devices' total (the abstract's singular "constraint")."""

from __future__ import annotations

import numpy as np
import pytest

from airtune.allocation.planner import RoundInputs, RoundOutcome, make_planner
from airtune.allocation.split_fed.planner import LyapunovPlanner
from airtune.allocation.split_fed.scheduling import schedule_lyapunov
from tests.allocation.split_fed.test_planner import K, context

DIST_M = np.linspace(60.0, 450.0, K)      # fixed: device 0 is always the nearest (cheapest to serve)


def inputs(t: int) -> RoundInputs:
    r = np.random.default_rng(100 + t)
    gain = 10 ** (-(128.1 + 37.6 * np.log10(DIST_M / 1000)) / 10) * r.exponential(1.0, K)
    return RoundInputs(round_idx=t, rng=np.random.default_rng(t), channel_gain=gain, distance_m=DIST_M,
                       uplink_bits=np.full(K, 2e7), downlink_bits=np.full(K, 5e6),
                       compute_s=np.full(K, 0.1), compute_energy_j=np.full(K, 0.01))


def run(options: dict, rounds: int) -> tuple[LyapunovPlanner, np.ndarray, list[dict]]:
    planner = make_planner(LyapunovPlanner, options, context(rounds=rounds))
    energy, reports = [], []
    for t in range(rounds):
        x = inputs(t)
        plan = planner.plan(x)
        e = np.where(plan.selected, plan.extra["per_device_energy_j"], 0.0)
        reports.append(planner.observe(x, plan, RoundOutcome(plan.selected, plan.selected * 1.0, e,
                                                             plan.selected * 1.0, np.zeros(K), 1.0)))
        energy.append(e)
    return planner, np.array(energy), reports


def test_calibrated_budget_is_the_unconstrained_spend_over_1_plus_excess():
    opts = {"V": 1.0, "deadline_s": 4.0, "budget_excess": 0.3}
    planner, _, reports = run(opts, 5)
    free = []                                   # the unconstrained policy, solved independently
    for t in range(5):
        kw = planner.solver_kwargs(inputs(t))
        free.append(schedule_lyapunov(**{**kw, "queues_j": np.zeros(K)}).extra["per_device_energy_j"])
        assert reports[t]["lyap_budget_j"] == pytest.approx(np.mean(free) / 1.3, rel=1e-12)
    assert planner.budget_j is not None and np.all(planner.budget_j == reports[-1]["lyap_budget_j"])
    assert reports[-1]["lyap_queue_max_j"] > 0          # it binds
    # resume: the calibration is part of the state
    other = make_planner(LyapunovPlanner, opts, context(rounds=5))
    other.load_state_dict(planner.state_dict())
    assert other.budget_j is not None and np.array_equal(other.budget_j, planner.budget_j)


def test_aggregate_constraint_meets_the_total_but_not_each_device():
    """Same V, budget and channels. Per device: every device's long-term energy is within its
    budget. Aggregate: the devices' total is within K x budget, but the queue no longer protects
    each device: the load moves between devices and some spend more than a per-device budget."""
    rounds, settle = 100, 25
    base = {"V": 10.0, "deadline_s": 4.0, "weights": "uniform"}
    per, e_per, rep_per = run({**base, "constraint": "per_device"}, rounds)
    agg, e_agg, rep_agg = run({**base, "constraint": "aggregate"}, rounds)
    assert per.queues.num_devices == K and agg.queues.num_devices == 1
    b_per, b_agg = rep_per[-1]["lyap_budget_j"], rep_agg[-1]["lyap_budget_j"]
    avg_per, avg_agg = e_per[settle:].mean(axis=0), e_agg[settle:].mean(axis=0)
    assert avg_per.max() <= 1.05 * b_per
    assert avg_agg.sum() <= 1.05 * K * b_agg
    assert avg_agg.max() > 1.05 * b_agg > avg_per.max() * b_agg / b_per
    spread = {name: np.ptp(avg / b) for name, avg, b in (("per", avg_per, b_per), ("agg", avg_agg, b_agg))}
    assert spread["agg"] > 2 * spread["per"], spread


def test_bad_options_one_line():
    from airtune.errors import ConfigError
    for bad, field in (({"energy_budget_j": "auto"}, "energy_budget_j"), ({"budget_excess": 0.0}, "budget_excess"),
                       ({"constraint": "total"}, "constraint"), ({"weights": "cosine"}, "weights")):
        with pytest.raises(ConfigError, match=field) as err:
            make_planner(LyapunovPlanner, bad, context())
        assert "\n" not in str(err.value).strip()
