"""Power control: dense-grid and scipy (interior point / Brent) agreement, limits, infeasibility."""

import dataclasses

import numpy as np
import pytest

from airtune.allocation.switching import power as pw
from airtune.allocation.switching import power_problem as pp
from airtune.wireless.channel import path_gain_at_1m_from_db
from airtune.wireless.outage import ppp_success_probability

N0 = 10 ** (-174 / 10) * 1e-3  # W/Hz
P_MAX = 0.2


def problem(rng, k_dev, model="fixed", interior=True, **over):
    """Random instance; with ``interior`` Q_k balances the outage slope at a random power."""
    kw = dict(
        payload_bits=rng.uniform(1e6, 1e7, k_dev), bandwidth_hz=rng.uniform(2e5, 2e6, k_dev),
        distance_m=rng.uniform(30, 300, k_dev), energy_weight=1.0, v=10.0, max_power_w=P_MAX,
        noise_psd_w_per_hz=N0, sinr_threshold=rng.uniform(0.5, 2, k_dev),
        path_loss_exponent=3.76, path_gain_at_1m=path_gain_at_1m_from_db(),
        interferer_density_per_m2=1e-5, interferer_power_w=0.02,
        risk_weight=rng.uniform(0.5, 2, k_dev), rate_model=model,
        channel_gain=rng.uniform(1e-12, 1e-9, k_dev), interference_w=1e-14,
    )
    kw.update(over)
    pr = pp.PowerProblem(**kw)
    if interior and model == "fixed":
        p0 = rng.uniform(0.02, 0.15, k_dev)
        h = 1e-6 * p0
        slope = (pp.outage(pr, p0 + h) - pp.outage(pr, p0 - h)) / (2 * h)  # < 0
        per_watt = pr.payload_bits / (pr.bandwidth_hz * np.log2(1 + pr.sinr_threshold))
        kw["energy_weight"] = pr.v * pr.risk_weight * (-slope) / per_watt
        pr = pp.PowerProblem(**kw)
    return pr


def dense_grid(pr, n=100_001):
    lo, _ = pp.deadline_min_power_w(pr)
    lo = np.minimum(lo, pr.max_power_w)
    grid = lo[:, None] + (pr.max_power_w - lo)[:, None] * np.linspace(0.0, 1.0, n)[None, :]
    f = pp.power_objective(pr, grid)
    j = np.argmin(f, axis=1)
    rows = np.arange(pr.num_devices)
    return grid[rows, j], f[rows, j], (pr.max_power_w - lo) / (n - 1)


@pytest.mark.parametrize("model", ["fixed", "shannon"])
def test_agrees_with_dense_grid(model):
    rng = np.random.default_rng(0 if model == "fixed" else 1)
    pr = problem(rng, 8, model, time_budget_s=rng.uniform(100, 200, 8))
    res = pw.solve_power(pr)
    assert res.converged and res.feasible.all()
    p_grid, f_grid, h = dense_grid(pr)
    # never worse than the best of 1e5 grid points; as good as it within grid resolution
    assert np.all(res.objective <= f_grid + 1e-12 * np.abs(f_grid))
    assert np.all(np.abs(res.power_w - p_grid) <= h * (1 + 1e-9))
    np.testing.assert_allclose(res.objective, pp.power_objective(pr, res.power_w), rtol=1e-15)
    if model == "fixed":
        interior = (res.power_w > 1e-6) & (res.power_w < P_MAX * (1 - 1e-6))
        assert interior.sum() >= 4  # the instance exercises the interior case


def test_agrees_with_scipy_references():
    rng = np.random.default_rng(2)
    pr = problem(rng, 5)
    res = pw.solve_power(pr)
    brent = pw.solve_power_scipy(pr, method="bounded")
    np.testing.assert_allclose(res.objective, brent.objective, rtol=1e-9)
    np.testing.assert_allclose(res.power_w, brent.power_w, rtol=1e-5, atol=1e-9)
    pr2 = problem(rng, 2)  # trust-constr is slow: two devices, two starts
    ipm = pw.solve_power_scipy(pr2, method="trust-constr", starts=2)
    ours = pw.solve_power(pr2)
    assert "trust-constr" in ipm.message
    np.testing.assert_allclose(ours.objective, ipm.objective, rtol=1e-8)
    assert np.all(ours.objective <= ipm.objective * (1 + 1e-12))


def test_outage_matches_channel_closed_form():
    rng = np.random.default_rng(3)
    pr = problem(rng, 4, interior=False)
    p = rng.uniform(0.01, 0.2, 4)
    expected = 1.0 - ppp_success_probability(
        pr.distance_m, p, pr.bandwidth_hz, N0, pr.sinr_threshold, 3.76,
        path_gain_at_1m_from_db(), 1e-5, 0.02)
    np.testing.assert_allclose(pp.outage(pr, p), expected, rtol=1e-14)


def test_limit_cases_hand():
    rng = np.random.default_rng(4)
    # V = 0: only energy counts, which grows with p (fixed rate) -> the lower limit
    pr = problem(rng, 4, v=0.0, interior=False, min_power_w=0.01)
    np.testing.assert_allclose(pw.solve_power(pr).power_w, 0.01)
    # Q = 0: only the outage counts, which falls with p -> the upper limit
    pr = problem(rng, 4, energy_weight=0.0, interior=False)
    np.testing.assert_allclose(pw.solve_power(pr).power_w, P_MAX)
    # fixed rate, linear energy: objective = V w q(p) + Q p S / (b log2(1 + theta))
    pr = problem(rng, 3, interior=False)
    p = np.array([0.05, 0.1, 0.2])
    hand = pr.v * pr.risk_weight * pp.outage(pr, p) + pr.energy_weight * p * pr.payload_bits / (
        pr.bandwidth_hz * np.log2(1 + pr.sinr_threshold))
    np.testing.assert_allclose(pp.power_objective(pr, p), hand, rtol=1e-14)


def test_custom_risk_function_equals_default():
    rng = np.random.default_rng(5)
    pr = problem(rng, 6)
    w = np.asarray(pr.risk_weight)
    custom = dataclasses.replace(pr, risk_fn=lambda q: w[:, None] * q)
    a, b = pw.solve_power(pr), pw.solve_power(custom)
    np.testing.assert_allclose(a.power_w, b.power_w, rtol=1e-14)
    sq = dataclasses.replace(pr, risk_fn=lambda q: w[:, None] * q**2)  # convex G also runs
    res = pw.solve_power(sq)
    p_grid, f_grid, _ = dense_grid(sq, n=20_001)
    assert np.all(res.objective <= f_grid + 1e-12 * np.abs(f_grid))


def test_shannon_deadline_floor_and_infeasibility_are_data():
    rng = np.random.default_rng(6)
    dt = rng.uniform(5, 50, 5)
    pr = problem(rng, 5, "shannon", time_budget_s=dt)
    lo, ok = pp.deadline_min_power_w(pr)
    assert ok.all()
    rate = pr.bandwidth_hz * np.log2(1 + lo * pr.channel_gain
                                     / (pr.interference_w + pr.bandwidth_hz * N0))
    np.testing.assert_allclose(rate * dt, pr.payload_bits, rtol=1e-9)
    res = pw.solve_power(pr)
    assert np.all(res.power_w >= lo * (1 - 1e-12)) and np.all(res.power_w <= P_MAX)
    # a deadline no power can meet: flagged, best effort p_max, no exception
    bad = dataclasses.replace(pr, time_budget_s=np.full(5, 1e-4))
    res = pw.solve_power(bad)
    assert not res.feasible.any() and "infeasible" in res.message
    np.testing.assert_allclose(res.power_w, P_MAX)
    fixed_bad = problem(rng, 3, time_budget_s=1e-6)
    assert not pw.solve_power(fixed_bad).feasible.any()


def test_inactive_devices_get_zero_power_and_result_is_frozen():
    rng = np.random.default_rng(7)
    pr = problem(rng, 4, interior=False, bandwidth_hz=np.array([1e6, 0.0, 1e6, 1e6]),
                 payload_bits=np.array([1e6, 1e6, 0.0, 1e6]))
    res = pw.solve_power(pr)
    np.testing.assert_array_equal(res.power_w[1:3], 0.0)
    np.testing.assert_array_equal(res.objective[1:3], 0.0)
    assert res.power_w[0] > 0 and res.feasible.all()
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.iterations = 0  # type: ignore[misc]
    with pytest.raises(ValueError):
        res.power_w[0] = 1.0
