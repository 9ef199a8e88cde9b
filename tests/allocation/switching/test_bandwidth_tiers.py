"""Algorithm 1 (two-tier bisection): scipy agreement, KKT, deadline floors, infeasibility."""

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from airtune.allocation.split_fed.waterfill import waterfill
from airtune.allocation.switching import bandwidth_tiers as bt
from airtune.allocation.switching import rate_model as rm

B_HZ = 1e7
N0 = 10 ** (-174 / 10) * 1e-3  # W/Hz


def instance(rng, k_dev, model="shannon", interference=True):
    d = rng.uniform(50, 500, k_dev)
    gain = 10 ** (-(128.1 + 37.6 * np.log10(d / 1000)) / 10) * rng.exponential(1.0, k_dev)
    return dict(
        weights=rng.uniform(0.1, 10, k_dev), payload_bits=rng.uniform(1e6, 1e7, k_dev),
        power_w=rng.uniform(0.05, 0.2, k_dev), channel_gain=gain, noise_psd_w_per_hz=N0,
        total_bandwidth_hz=B_HZ,
        interference_w=rng.uniform(0, 1e-13, k_dev) if interference else 0.0,
        rate_model=model, sinr_threshold=rng.uniform(1, 3, k_dev),
    )


def link(kw):
    return {k: kw[k] for k in ("power_w", "channel_gain", "noise_psd_w_per_hz",
                               "interference_w", "rate_model", "sinr_threshold")}


def slsqp(kw, floor):
    """Reference: SLSQP on z = b/B with analytic gradient (objective scaled to ~1)."""
    k_dev = len(kw["weights"])
    lk = link(kw)

    def energy(z):
        r = rm.rate_bps(z * B_HZ, **lk)
        return np.sum(kw["weights"] * kw["power_w"] * kw["payload_bits"] / r)

    z0 = np.maximum(floor / B_HZ, 0.99 / k_dev)
    z0 = z0 / z0.sum() * 0.999
    f0 = energy(z0)

    def grad(z):
        pi = rm.marginal_price(z * B_HZ, kw["weights"], kw["payload_bits"], **lk)
        return -pi * B_HZ / f0

    out = minimize(lambda z: energy(z) / f0, z0, jac=grad, method="SLSQP",
                   bounds=[(max(f / B_HZ, 1e-12), 1.0) for f in floor],
                   constraints=[{"type": "ineq", "fun": lambda z: 1.0 - z.sum(),
                                 "jac": lambda z: -np.ones(k_dev)}],
                   options={"ftol": 1e-15, "maxiter": 1000})
    return out.fun * f0


@pytest.mark.parametrize("search", ["bisection", "illinois"])
@pytest.mark.parametrize("model", ["shannon", "fixed"])
def test_agrees_with_slsqp_and_invariants(model, search):
    rng = np.random.default_rng(0 if model == "shannon" else 1)
    for _ in range(4):
        k_dev = int(rng.integers(2, 10))
        kw = instance(rng, k_dev, model)
        extra = np.where(np.arange(k_dev) == 0, 0.9 * B_HZ / k_dev, 0.0)  # one binding floor
        kw["weights"][0] = 1e-3
        res = bt.two_tier_bandwidth(time_budget_s=rng.uniform(3, 20, k_dev),
                                    min_bandwidth_hz=extra, search=search, **kw)
        assert res.feasible and res.converged, res.message
        assert res.bandwidth_hz[0] == pytest.approx(res.min_bandwidth_hz[0], rel=1e-12)
        b = res.bandwidth_hz
        assert np.sum(b) <= B_HZ * (1 + 1e-12) and np.sum(b) == pytest.approx(B_HZ, rel=1e-9)
        assert np.all(b >= res.min_bandwidth_hz * (1 - 1e-12))
        ref = slsqp(kw, res.min_bandwidth_hz)
        assert res.objective == pytest.approx(ref, rel=1e-6)
        assert res.objective <= ref * (1 + 1e-9)  # never worse than the generic solver
        # KKT: price equals nu above the floor, is at most nu on it
        pi = rm.marginal_price(b, kw["weights"], kw["payload_bits"], **link(kw))
        free = b > res.min_bandwidth_hz * (1 + 1e-9)
        np.testing.assert_allclose(pi[free], res.nu, rtol=1e-6)
        assert np.all(pi[~free] <= res.nu * (1 + 1e-6))
        np.testing.assert_allclose(res.energy_j, kw["power_w"] * kw["payload_bits"]
                                   / rm.rate_bps(b, **link(kw)), rtol=1e-12)


@pytest.mark.parametrize("search", ["bisection", "illinois"])
def test_fixed_rate_closed_form(search):
    rng = np.random.default_rng(2)
    kw = instance(rng, 6, "fixed")
    res = bt.two_tier_bandwidth(search=search, **kw)
    c = np.log2(1 + kw["sinr_threshold"])
    expected = np.sqrt(kw["weights"] * kw["power_w"] * kw["payload_bits"] / (c * res.nu))
    np.testing.assert_allclose(res.bandwidth_hz, expected, rtol=1e-8)
    # with nu from sum b = B: b_k proportional to sqrt(Q p S / c)
    share = np.sqrt(kw["weights"] * kw["power_w"] * kw["payload_bits"] / c)
    np.testing.assert_allclose(res.bandwidth_hz, B_HZ * share / share.sum(), rtol=1e-9)


@pytest.mark.parametrize("search", ["bisection", "illinois"])
def test_agrees_with_waterfill_without_interference(search):
    rng = np.random.default_rng(3)
    kw = instance(rng, 8, "shannon", interference=False)
    floor = rng.uniform(0, 5e5, 8)
    res = bt.two_tier_bandwidth(min_bandwidth_hz=floor, search=search, **kw)
    wf = waterfill(kw["weights"], kw["payload_bits"], kw["power_w"], kw["channel_gain"], N0,
                   floor, B_HZ)
    np.testing.assert_allclose(res.bandwidth_hz, wf.bandwidth_hz, rtol=1e-8)
    assert res.nu == pytest.approx(wf.nu, rel=1e-8)


def test_deadline_floors_meet_the_deadline_exactly():
    rng = np.random.default_rng(4)
    kw = instance(rng, 5)
    dt = rng.uniform(3, 20, 5)
    for intf in (0.0, kw["interference_w"]):
        lk = dict(link(kw), interference_w=intf)
        floor = rm.deadline_min_bandwidth_hz(kw["payload_bits"], dt, **lk)
        np.testing.assert_allclose(rm.rate_bps(floor, **lk) * dt, kw["payload_bits"], rtol=1e-9)
    lk = dict(link(kw), rate_model="fixed")
    floor = rm.deadline_min_bandwidth_hz(kw["payload_bits"], dt, **lk)
    np.testing.assert_allclose(
        floor, kw["payload_bits"] / (dt * np.log2(1 + kw["sinr_threshold"])), rtol=1e-14)
    # unreachable: the rate needed is above the infinite-bandwidth capacity p h / (N0 ln 2)
    cap_bps = kw["power_w"][0] * kw["channel_gain"][0] / (N0 * math.log(2))
    far = rm.deadline_min_bandwidth_hz(2 * cap_bps, 1.0, kw["power_w"][0],
                                       kw["channel_gain"][0], N0, 1e-14)
    assert np.isinf(far)


def test_infeasible_is_flagged_with_best_effort_split():
    rng = np.random.default_rng(5)
    kw = instance(rng, 6)
    res = bt.two_tier_bandwidth(time_budget_s=0.05, **kw)  # far too tight for 10 MHz
    assert not res.feasible
    assert "infeasible" in res.message and ("exceeds" in res.message
                                            or "any bandwidth" in res.message)
    assert np.sum(res.bandwidth_hz) == pytest.approx(B_HZ, rel=1e-9)
    assert np.all(res.bandwidth_hz > 0) and np.isfinite(res.objective)
    free = bt.two_tier_bandwidth(**kw)  # best effort = the split without floors
    np.testing.assert_allclose(res.bandwidth_hz, free.bandwidth_hz, rtol=1e-9)


def test_module_level_totals_and_idle_devices():
    rng = np.random.default_rng(6)
    kw = instance(rng, 7)
    kw.pop("payload_bits")
    x = np.zeros((7, 3), bool)
    x[[0, 1, 2, 4, 5], [0, 2, 2, 1, 0]] = True  # devices 3 and 6 idle
    payload = np.array([2e6, 4e6, 8e6])
    res = bt.bandwidth_for_switching(x, payload, **kw, time_budget_s=10.0)
    assert res.feasible and res.converged
    assert res.bandwidth_hz[3] == 0 and res.bandwidth_hz[6] == 0 and res.energy_j[3] == 0
    np.testing.assert_allclose(res.module_bandwidth_hz, x.T.astype(float) @ res.bandwidth_hz)
    np.testing.assert_allclose(res.module_energy_j, x.T.astype(float) @ res.energy_j)
    assert res.module_bandwidth_hz.sum() == pytest.approx(B_HZ, rel=1e-9)
    direct = bt.two_tier_bandwidth(payload_bits=x.astype(float) @ payload, **kw,
                                   time_budget_s=10.0)
    np.testing.assert_allclose(res.bandwidth_hz, direct.bandwidth_hz, rtol=1e-12)
    with pytest.raises(ValueError):
        res.bandwidth_hz[0] = 1.0


def test_unweighted_devices_tie_break_and_floor():
    rng = np.random.default_rng(7)
    kw = instance(rng, 4)
    kw["weights"] = np.zeros(4)
    res = bt.two_tier_bandwidth(**kw)
    assert res.objective == 0.0 and "no device has positive weight" in res.message
    assert np.sum(res.bandwidth_hz) == pytest.approx(B_HZ, rel=1e-9)
    kw["weights"] = np.array([1.0, 0.0, 2.0, 3.0])
    res = bt.two_tier_bandwidth(min_bandwidth_hz=1e5, **kw)
    assert res.bandwidth_hz[1] == pytest.approx(1e5)  # a zero-weight device sits on its floor


def test_illinois_matches_bisection_with_far_fewer_steps():
    """Same brackets and stopping rules: the same allocation at K = 1000, in fewer steps."""
    rng = np.random.default_rng(7)
    kw = instance(rng, 1000)
    kw["payload_bits"] = kw["payload_bits"] / 100  # 10 kHz each: deadlines and floors still bind
    extra = dict(time_budget_s=rng.uniform(5, 20, 1000), min_bandwidth_hz=rng.uniform(0, 2e3, 1000))
    slow = bt.two_tier_bandwidth(**kw, **extra)
    fast = bt.two_tier_bandwidth(**kw, **extra, search="illinois")
    assert slow.converged and fast.converged, (slow.message, fast.message)
    np.testing.assert_allclose(fast.bandwidth_hz, slow.bandwidth_hz, rtol=1e-8)
    assert fast.objective == pytest.approx(slow.objective, rel=1e-10)
    assert fast.iterations_inner < slow.iterations_inner / 4
    assert fast.iterations_outer < slow.iterations_outer / 2
