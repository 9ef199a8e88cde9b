"""Paper 1's water-filling and marginal energy price: invariants and scipy references."""

import numpy as np
import pytest
from scipy.optimize import minimize

from airtune.allocation import min_bandwidth as mb
from airtune.allocation.split_fed import waterfill as bw

N0 = 4e-21  # W/Hz (-174 dBm/Hz)


def rate(b, a):
    """Shannon rate b log2(1 + a / b) with the SNR-bandwidth a = p h / N0."""
    return b * np.log2(1.0 + a / b)


def test_marginal_price_is_minus_weighted_derivative():
    q, s, p, h = np.array([2.0, 0.5, 0.0]), np.array([1e6, 3e6, 1e6]), 0.2, np.array(
        [1e-13, 1e-11, 1e-12])
    b = np.array([2e5, 1e6, 5e5])
    eps = 1e-6 * b
    e_plus = q * bw.upload_energy_j(b + eps, s, p, h, N0)
    e_minus = q * bw.upload_energy_j(b - eps, s, p, h, N0)
    fd = -(e_plus - e_minus) / (2 * eps)
    np.testing.assert_allclose(bw.marginal_energy_price(b, q, s, p, h, N0), fd, rtol=1e-6)


def test_bandwidth_for_marginal_price_inverts_price_and_clamps():
    q, s, p, h = np.array([1.0, 1.0, 1.0, 0.0]), 2e6, 0.2, np.array([1e-13, 1e-12, 1e-11, 1e-12])
    lo, hi = np.full(4, 1e3), np.full(4, 1e7)
    nu = float(bw.marginal_energy_price(1e6, 1.0, s, p, 1e-12, N0))
    b = bw.bandwidth_for_marginal_price(nu, q, s, p, h, N0, lo, hi)
    assert b[1] == pytest.approx(1e6, rel=1e-10)
    inner = (b > lo) & (b < hi)
    np.testing.assert_allclose(bw.marginal_energy_price(b[inner], 1.0, s, p, h[inner], N0), nu,
                               rtol=1e-10)
    assert b[3] == lo[3]  # zero weight -> lower end
    assert bw.bandwidth_for_marginal_price(1e-30, 1.0, s, p, 1e-12, N0, 1e3, 1e7) == 1e7
    assert bw.bandwidth_for_marginal_price(1e30, 1.0, s, p, 1e-12, N0, 1e3, 1e7) == 1e3


# --------------------------------------------------------------------------- water-filling


def random_instance(rng, k):
    q = rng.uniform(0.0, 5.0, k) * (rng.random(k) < 0.8)
    s = rng.uniform(1e5, 1e7, k)
    p = rng.uniform(0.05, 0.5, k)
    h = 10 ** rng.uniform(-13, -10, k)
    b_min = 0.5 * mb.min_bandwidth_for_deadline(s, rng.uniform(0.5, 3.0, k), p, h, N0)
    return q, s, p, h, np.where(np.isfinite(b_min), b_min, 0.0)


def slsqp(q, s, p, h, b_min, total):
    """Independent reference: SLSQP in units of B from the equal split of the slack."""
    def energy(x):
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.sum(q * p * s / rate(x * total, p * h / N0)))

    x0 = b_min / total + (1.0 - b_min.sum() / total) / b_min.size
    scale = energy(x0)
    res = minimize(lambda x: energy(x) / scale, x0, method="SLSQP",
                   bounds=[(lo / total, 1.0) for lo in b_min],
                   constraints=[{"type": "eq", "fun": lambda x: np.sum(x) - 1.0}],
                   options={"ftol": 1e-15, "maxiter": 1000})
    assert res.success, res.message
    return energy(res.x)


@pytest.mark.parametrize("seed", range(6))
def test_waterfill_matches_slsqp_and_kkt(seed):
    rng = np.random.default_rng(seed)
    q, s, p, h, b_min = random_instance(rng, int(rng.integers(2, 8)))
    q[0] = max(q[0], 0.5)  # at least one weighted device
    total = 1e7
    assert b_min.sum() < total
    res = bw.waterfill(q, s, p, h, N0, b_min, total)
    b = res.bandwidth_hz
    assert res.feasible and res.converged
    assert b.sum() == pytest.approx(total, rel=1e-12)
    assert np.all(b >= b_min)
    ours = float(np.sum(q * bw.upload_energy_j(b, s, p, h, N0)))
    assert ours == pytest.approx(slsqp(q, s, p, h, b_min, total), rel=1e-6)
    # KKT: price nu on devices above their minimum, at most nu on those at it; Q=0 at minimum
    price = bw.marginal_energy_price(b, q, s, p, h, N0)
    above = b > b_min * (1 + 1e-9)
    np.testing.assert_allclose(price[above], res.nu, rtol=1e-6)
    assert np.all(price[~above] <= res.nu * (1 + 1e-6))
    np.testing.assert_array_equal(b[q == 0], b_min[q == 0])


def test_waterfill_unweighted_tie_break():
    s, p, h = np.array([1e6, 2e6]), 0.2, np.array([1e-12, 1e-11])
    b_min = np.array([1e5, 2e5])
    spread = bw.waterfill([0.0, 0.0], s, p, h, N0, b_min, 1e6)
    assert spread.bandwidth_hz.sum() == pytest.approx(1e6, rel=1e-12)
    unit = bw.waterfill([1.0, 1.0], s, p, h, N0, b_min, 1e6)
    np.testing.assert_allclose(spread.bandwidth_hz, unit.bandwidth_hz, rtol=1e-12)
    keep = bw.waterfill([0.0, 0.0], s, p, h, N0, b_min, 1e6, spread_when_unweighted=False)
    np.testing.assert_array_equal(keep.bandwidth_hz, b_min)
    assert keep.converged and keep.feasible


def test_waterfill_infeasible_returns_record():
    s, p, h = np.array([1e6, 2e6]), 0.2, 1e-12
    res = bw.waterfill([1.0, 1.0], s, p, h, N0, [6e5, 6e5], 1e6)
    assert not res.feasible and not res.converged and "infeasible" in res.message
    res = bw.waterfill([1.0, 1.0], s, p, h, N0, [np.inf, 1.0], 1e6)
    assert not res.feasible
