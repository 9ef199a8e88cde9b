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
    """A tsfa planner with a light stage 1 (32 Monte-Carlo rounds)."""
    return make_planner(TSFAPlanner, {"stage1_samples": 32, **opts}, context())


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


def test_stage1_rank_is_reported_or_enforced():
    loose = {"latency_budget_s": 50.0}
    p = planner(**loose)
    p.plan(inputs(0))
    assert p.stage1_rank == 32          # every rank fits: the rank term 1/r decides
    with pytest.raises(ConfigError, match=r"lora.rank = 8 but TSFA stage 1 chose rank 32.*fix: set lora.rank=32"):
        planner(**{**loose, "rank_policy": "enforce"}).plan(inputs(0))
    # a stage-1 choice equal to lora.rank passes under enforce
    inp = inputs(0)
    table32 = soft_payload_table(32, DIMS).astype(float) + 10_000
    inp32 = RoundInputs(**{**inp.__dict__, "hints": Hints(soft_payload=SoftPayloadHint(rank=32, payload_bits=table32))})
    plan = planner(**{**loose, "rank_policy": "enforce"}).plan(inp32)
    assert plan.num_selected == N
