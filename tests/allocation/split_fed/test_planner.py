"""The registered ``lyapunov`` allocator: its per-round decision is ``schedule_lyapunov`` on the
runner's inputs, its queues follow the hand-computed recursion, and it resumes exactly."""

from __future__ import annotations

import numpy as np
import pytest

from airtune.allocation.planner import PlannerContext, RoundInputs, RoundOutcome, make_planner
from airtune.allocation.split_fed.lyapunov import bound_weight, g_inverse, g_without_replacement
from airtune.allocation.split_fed.planner import LyapunovPlanner
from airtune.allocation.split_fed.scheduling import schedule_lyapunov
from airtune.config import Config
from airtune.errors import ConfigError
from airtune.registry import ALLOCATORS
from airtune.wireless.channel import shannon_rate_bps
from airtune.wireless.link import link_from_config
from airtune.wireless.units import dbm_to_w

K = 8
WIRELESS = Config().wireless.model_copy(update={"link": "error_free"})
N0 = dbm_to_w(WIRELESS.noise_psd_dbm_per_hz)


def context(rounds: int = 6, n: int = 3) -> PlannerContext:
    return PlannerContext(num_devices=K, devices_per_round=n, rounds=rounds, cpu_freq_hz=np.full(K, 1e9),
                          max_power_w=np.full(K, 0.2), kappa=1e-28, data_sizes=np.full(K, 100.0),
                          link=link_from_config(WIRELESS.model_copy(update={"uplink_bandwidth_hz": 10e6})), lora_dims=[],
                          seed=0, scheduler="random")


def inputs(t: int) -> RoundInputs:
    r = np.random.default_rng(100 + t)
    dist = r.uniform(50, 500, K)
    gain = 10 ** (-(128.1 + 37.6 * np.log10(dist / 1000)) / 10) * r.exponential(1.0, K)
    return RoundInputs(round_idx=t, rng=np.random.default_rng(t), channel_gain=gain, distance_m=dist,
                       uplink_bits=r.uniform(5e6, 3e7, K), downlink_bits=r.uniform(2e6, 1e7, K),
                       compute_s=r.uniform(0.01, 0.3, K), compute_energy_j=r.uniform(0.001, 0.05, K))


def outcome(plan, t: int) -> RoundOutcome:
    """Measured energy: the planned per-device energy plus a deterministic perturbation."""
    e = plan.extra["per_device_energy_j"] * (1.0 + 0.1 * np.cos(np.arange(K) + t))
    sel = plan.selected
    return RoundOutcome(delivered=sel.copy(), success_prob=sel.astype(float), energy_j=np.where(sel, e, 0.0),
                        latency_s=np.where(sel, 1.0, 0.0), uplink_bits=np.zeros(K), round_latency_s=1.0)


OPTS = {"V": 0.05, "rho": 0.9, "energy_budget_j": 0.02, "deadline_s": 4.0, "g": "inverse"}


def test_registered_and_options_validated():
    assert ALLOCATORS.get("lyapunov") is LyapunovPlanner
    with pytest.raises(ConfigError, match=r"allocation.options.Vee"):
        make_planner(LyapunovPlanner, {"Vee": 1.0}, context())
    with pytest.raises(ConfigError, match="energy_budget_j has 2 entries"):
        make_planner(LyapunovPlanner, {"energy_budget_j": [0.1, 0.2]}, context())


def test_decision_equals_schedule_lyapunov_called_directly():
    planner = make_planner(ALLOCATORS.get("lyapunov"), OPTS, context())
    queues = np.zeros(K)
    for t in range(6):
        x = inputs(t)
        plan = planner.plan(x)
        w = WIRELESS
        # row N-1: the downlink shared by N scheduled devices (N = 1..K, no cap by default)
        dl_s = np.stack([x.downlink_bits / shannon_rate_bps(w.downlink_bandwidth_hz / n, dbm_to_w(w.server_power_dbm),
                                                            x.channel_gain, N0) for n in range(1, K + 1)])
        ref = schedule_lyapunov(queues_j=queues, V=0.05, weight=0.9 ** (6 - 1 - t), g=g_inverse,
                                compute_s=x.compute_s, downlink_s=dl_s,
                                uplink_bits=x.uplink_bits, power_w=0.2, channel_gain=x.channel_gain,
                                noise_psd_w_per_hz=N0, total_bandwidth_hz=10e6, deadline_s=4.0,
                                compute_energy_j=x.compute_energy_j, orders=("cost", "b_min"))
        assert plan.selected.tolist() == ref.selected.tolist()
        np.testing.assert_array_equal(plan.bandwidth_hz, ref.bandwidth_hz)
        assert plan.objective == ref.objective
        out = outcome(plan, t)
        report = planner.observe(x, plan, out)
        # hand recursion: Q <- max(Q + a E - budget, 0) with the measured energy
        queues = np.maximum(queues + np.where(plan.selected, out.energy_j, 0.0) - 0.02, 0.0)
        np.testing.assert_allclose(planner.queues.backlog_j, queues, rtol=0, atol=0)
        assert report["lyap_queue_max_j"] == pytest.approx(queues.max())
        assert report["lyap_queue_mean_j"] == pytest.approx(queues.mean())
    assert queues.max() > 0   # the budget binds, so the test exercises non-zero queues
    assert report["lyap_budget_violations"] >= 0 and "lyap_budget_ratio_max" in report


def test_queues_change_the_decision():
    """Backlogged queues make the planner schedule fewer devices than empty ones (same inputs)."""
    planner = make_planner(LyapunovPlanner, {**OPTS, "g": "without_replacement"}, context())
    x = inputs(5)
    empty = planner.plan(x)
    planner.load_state_dict({"queues_j": np.full(K, 50.0), "cum_energy_j": np.zeros(K), "rounds_seen": 1})
    full = planner.plan(x)
    assert empty.num_selected > 3 and full.num_selected < empty.num_selected   # N is not capped at devices_per_round
    assert planner.solver_kwargs(x)["g"] is g_without_replacement
    assert planner.solver_kwargs(x)["weight"] == bound_weight(5, 6, 0.9)


def test_without_budget_queues_stay_empty_and_n_is_maximal():
    planner = make_planner(LyapunovPlanner, {"deadline_s": 30.0, "max_devices": 5, "energy_budget_j": None}, context())
    for t in range(3):
        plan = planner.plan(inputs(t))
        rep = planner.observe(inputs(t), plan, outcome(plan, t))
        assert plan.num_selected == 5 and rep["lyap_queue_max_j"] == 0.0
        assert "lyap_budget_violations" not in rep


def test_resume_from_state_dict_is_exact():
    a = make_planner(LyapunovPlanner, OPTS, context())
    decisions = []
    for t in range(6):
        plan = a.plan(inputs(t))
        a.observe(inputs(t), plan, outcome(plan, t))
        decisions.append((plan.selected.tolist(), plan.bandwidth_hz.tolist()))
        if t == 2:
            saved = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in a.state_dict().items()}
    b = make_planner(LyapunovPlanner, OPTS, context())
    b.load_state_dict(saved)
    for t in range(3, 6):
        plan = b.plan(inputs(t))
        b.observe(inputs(t), plan, outcome(plan, t))
        assert (plan.selected.tolist(), plan.bandwidth_hz.tolist()) == decisions[t]
    np.testing.assert_array_equal(a.queues.backlog_j, b.queues.backlog_j)
    np.testing.assert_array_equal(a.cum_energy_j, b.cum_energy_j)
