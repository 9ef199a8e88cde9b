"""The ``tsfa`` planner: budgets per round, the long-term latency constraint, stage 1, exact resume."""

from __future__ import annotations

import numpy as np
import pytest

from airtune.allocation.exchange import Hints, SoftPayloadHint
from airtune.allocation.planner import PlannerContext, RoundInputs, RoundOutcome, make_planner
from airtune.allocation.tsfa.planner import TSFAPlanner
from airtune.config import Config
from airtune.errors import ConfigError
from airtune.lora.soft_payload import soft_payload_table
from airtune.registry import ALLOCATORS
from airtune.wireless.channel import path_gain, shannon_rate_bps
from airtune.wireless.link import link_from_config
from airtune.wireless.units import dbm_to_w

K, N, R = 8, 3, 8
DIMS = [(384, 384)] * 12
W = Config().wireless.model_copy(update={"link": "error_free"})
N0 = dbm_to_w(W.noise_psd_dbm_per_hz)
BW = 1e6
DIST = np.linspace(60, 480, K)
TABLE = soft_payload_table(R, DIMS).astype(float) + 10_000   # + a head


def context(seed=0) -> PlannerContext:
    return PlannerContext(num_devices=K, devices_per_round=N, rounds=100, cpu_freq_hz=np.full(K, 1e9),
                          max_power_w=np.full(K, dbm_to_w(23.0)), kappa=1e-28,
                          data_sizes=np.arange(1.0, K + 1) * 50,
                          link=link_from_config(W.model_copy(update={"uplink_bandwidth_hz": BW})), lora_dims=DIMS, seed=seed, scheduler="random")


def inputs(t: int, curve=None) -> RoundInputs:
    rng = np.random.default_rng([7, t])
    gain = path_gain(DIST, W.path_loss_const_db, W.path_loss_slope_db) * rng.exponential(1.0, K)
    comp = np.linspace(0.2, 0.6, K)
    hints = Hints(soft_payload=SoftPayloadHint(
        rank=R, payload_bits=TABLE, error_curve=curve if curve is not None else (1 - np.arange(R + 1) / R) ** 2))
    return RoundInputs(round_idx=t, rng=np.random.default_rng([11, t]), channel_gain=gain, distance_m=DIST,
                       uplink_bits=np.full(K, TABLE[-1]), downlink_bits=np.full(K, 2e6), compute_s=comp,
                       compute_energy_j=np.zeros(K), hints=hints)


def measured_latency(inp: RoundInputs, plan) -> float:
    """Round latency from first principles: compute + downlink + S(m)/Shannon rate, max over scheduled."""
    sel = plan.selected
    ul = shannon_rate_bps(plan.bandwidth_hz, plan.power_w, inp.channel_gain, N0)
    dl = shannon_rate_bps(W.downlink_bandwidth_hz / sel.sum(), dbm_to_w(W.server_power_dbm), inp.channel_gain, N0)
    S = TABLE[plan.extra["kept_components"]]
    lat = inp.compute_s + inp.downlink_bits / dl + S / np.where(sel, ul, 1.0)
    return float(lat[sel].max())


def planner(**opts):
    """A tsfa planner with a light stage 1 (32 Monte-Carlo rounds), training the hint's rank."""
    return make_planner(TSFAPlanner, {"stage1_samples": 32, "rank_policy": "report", **opts}, context())


def outcome(plan, latency_s: float) -> RoundOutcome:
    z = np.zeros(K)
    return RoundOutcome(plan.selected.copy(), z, z, z, z, latency_s)


def test_registered_and_needs_the_budget_and_soft_hints():
    assert ALLOCATORS.get("tsfa") is TSFAPlanner
    with pytest.raises(ConfigError, match="latency_budget_s"):
        make_planner(TSFAPlanner, {}, context())
    p = planner(**{"latency_budget_s": 1.0})
    bare = inputs(0)
    bare = RoundInputs(**{**bare.__dict__, "hints": Hints()})
    with pytest.raises(ConfigError, match="strategy.name=soft"):
        p.plan(bare)


def test_each_round_meets_the_bandwidth_budget_and_the_plan_matches_the_measured_latency():
    p = planner(**{"latency_budget_s": 1.0, "v": 2.0})
    for t in range(12):
        inp = inputs(t)
        plan = p.plan(inp)
        assert plan.num_selected == N
        assert plan.bandwidth_hz.sum() <= BW * (1 + 1e-9)
        assert np.all(plan.bandwidth_hz[~plan.selected] == 0)
        keep = plan.directives.sparsity.keep_ratio
        assert np.all(keep[~plan.selected] == 1) and np.all((keep > 0) & (keep <= 1))
        assert np.array_equal(plan.extra["kept_components"][plan.selected], np.round(keep[plan.selected] * R))
        lat = measured_latency(inp, plan)
        assert lat == pytest.approx(plan.extra["latency_s"], rel=1e-6)
        rep = p.observe(inp, plan, outcome(plan, lat))
        assert rep["tsfa_budget_s"] == 1.0 and rep["tsfa_stage1_rank"] in (2, 4, 8, 16, 32)


def _simulate(p, rounds, start=0):
    lat, keep = [], []
    for t in range(start, start + rounds):
        inp = inputs(t)
        plan = p.plan(inp)
        latency = measured_latency(inp, plan)
        p.observe(inp, plan, outcome(plan, latency))
        lat.append(latency)
        keep.append(plan.directives.sparsity.keep_ratio.copy())
    return np.array(lat), np.array(keep)


def test_time_average_latency_converges_below_the_budget():
    # budget between the average latency of sending one component and sending all r
    full = planner(**{"latency_budget_s": 100.0, "v": 1.0})   # Z stays 0: m = r
    lat_full, keep_full = _simulate(full, 120)
    assert np.all(keep_full == 1.0)
    budget = 0.8 * lat_full.mean()
    p = planner(**{"latency_budget_s": budget, "v": 1.0})
    lat, keep = _simulate(p, 120)
    running = np.cumsum(lat) / np.arange(1, lat.size + 1)
    assert running[-1] <= budget * 1.01
    assert p.queue_s < 5 * lat_full.max()           # the virtual queue stays bounded
    assert 0 < keep.mean() < 1                       # it sparsifies, but not everything
    assert lat_full.mean() > budget                  # without control the budget is violated


def test_resume_is_exact():
    opts = {"latency_budget_s": 0.9, "v": 1.0}
    a = planner(**opts)
    lat_a, keep_a = _simulate(a, 20)
    b = planner(**opts)
    _simulate(b, 8)
    c = planner(**opts)
    c.load_state_dict(b.state_dict())
    lat_c, keep_c = _simulate(c, 12, start=8)
    assert np.array_equal(keep_c, keep_a[8:]) and np.array_equal(lat_c, lat_a[8:])
    assert c.state_dict() == a.state_dict()


def test_stage1_rank_is_adopted_enforced_or_reported():
    loose = {"latency_budget_s": 50.0}
    p = planner(**loose)
    p.plan(inputs(0))
    assert p.stage1_rank in (2, 4, 8, 16, 32)
    chosen = p.stage1_rank
    # adopt (the default): decide_rank is the stage-1 rank, asked before the model is built
    adopt = make_planner(TSFAPlanner, {"stage1_samples": 32, **loose}, context())
    assert adopt.options.rank_policy == "adopt"
    assert adopt.decide_rank(inputs(0)) == chosen
    # a model built at another rank under adopt: the one-line error names the fix
    other = 8 if chosen != 8 else 4
    table = soft_payload_table(other, DIMS).astype(float) + 10_000
    inp = RoundInputs(**{**inputs(0).__dict__, "hints": Hints(soft_payload=SoftPayloadHint(rank=other,
                                                                                           payload_bits=table))})
    with pytest.raises(ConfigError, match="rank_policy=adopt"):
        make_planner(TSFAPlanner, {"stage1_samples": 32, **loose}, context()).plan(inp)
    with pytest.raises(ConfigError, match=rf"lora.rank = {other} but TSFA stage 1 chose rank {chosen}.*fix: set lora.rank"):
        planner(**{**loose, "rank_policy": "enforce"}).plan(inp)
    assert planner(**loose).decide_rank(inp) is None          # report: the configured rank is trained
    # stage 1 does not depend on the rank the model was first built at (the downlink is per candidate)
    head = float(inputs(0).downlink_bits[0]) - R * sum(d + n for d, n in DIMS) * 32
    inp_other = RoundInputs(**{**inp.__dict__, "downlink_bits": np.full(K, head + other * sum(d + n for d, n in DIMS) * 32)})
    assert adopt.run_stage1(inp_other).rank == chosen
    np.testing.assert_allclose(adopt.run_stage1(inp_other).bound, adopt.run_stage1(inputs(0)).bound, rtol=1e-9)


def test_each_device_gets_its_own_error_curve():
    """Row k of the hint is device k's: two otherwise identical plans differ only where the
    curves differ, and a device whose update holds more energy keeps at least as many components."""
    base = (1 - np.arange(R + 1) / R) ** 2
    curves = np.tile(base, (K, 1))
    energy = np.ones(K)
    p0 = planner(latency_budget_s=0.5, v=1.0)
    p0.queue_s = 0.4
    inp = inputs(3)
    hint = Hints(soft_payload=SoftPayloadHint(rank=R, payload_bits=TABLE, error_curve=curves, error_energy=energy))
    plan_eq = p0.plan(RoundInputs(**{**inp.__dict__, "hints": hint}))
    sel = np.flatnonzero(plan_eq.selected)
    boosted = energy.copy()
    boosted[sel[0]] = 50.0
    p1 = planner(latency_budget_s=0.5, v=1.0)
    p1.queue_s = 0.4
    hint_b = Hints(soft_payload=SoftPayloadHint(rank=R, payload_bits=TABLE, error_curve=curves, error_energy=boosted))
    plan_b = p1.plan(RoundInputs(**{**inputs(3).__dict__, "hints": hint_b}))   # same schedule stream
    assert np.array_equal(plan_b.selected, plan_eq.selected)
    kept_eq, kept_b = plan_eq.extra["kept_components"], plan_b.extra["kept_components"]
    assert kept_b[sel[0]] > kept_eq[sel[0]]
    assert np.all(kept_b[sel[1:]] <= kept_eq[sel[1:]])


def test_scaled_error_table_by_hand():
    from airtune.allocation.tsfa.planner import scaled_error_table
    rel = np.array([[1.0, 0.5, 0.0], [1.0, 0.25, 0.0], [1.0, 0.0, 0.0]])
    h = SoftPayloadHint(rank=2, payload_bits=np.array([1.0, 2.0, 3.0]), error_curve=rel,
                        error_energy=np.array([2.0, 4.0, 9.0]))
    idx, p = np.array([0, 1]), np.array([0.5, 0.5])
    # absolute: rel * energy of rows 0, 1
    np.testing.assert_allclose(scaled_error_table(h, idx, p, "absolute", 3.0), [[2.0, 1.0, 0.0], [4.0, 1.0, 0.0]])
    # budget: T^2 eps / sum p^2 eps(0) = 9 eps / (0.25 * 2 + 0.25 * 4) = 6 eps
    np.testing.assert_allclose(scaled_error_table(h, idx, p, "budget", 3.0), [[12.0, 6.0, 0.0], [24.0, 6.0, 0.0]])
    flat = SoftPayloadHint(rank=2, payload_bits=np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(scaled_error_table(flat, idx, p, "budget", 1.0), [[2.0, 1.0, 0.0]] * 2)


def test_descent_options_reach_the_solver():
    """max_rounds = 1 is the plain grid search (one greedy round); the default descends further."""
    inp = inputs(3)
    grid = planner(**{"latency_budget_s": 1.0, "v": 2.0, "max_rounds": 1}).plan(inp)
    full = planner(**{"latency_budget_s": 1.0, "v": 2.0}).plan(inp)
    narrow = planner(**{"latency_budget_s": 1.0, "v": 2.0, "descent_cells": 0}).plan(inp)
    assert grid.iterations == 1 and full.iterations > 1
    assert full.objective <= grid.objective * (1 + 1e-12) and full.objective <= narrow.objective * (1 + 1e-12)
