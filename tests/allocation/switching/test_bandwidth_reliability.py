"""Algorithm 1 on the fixed-slot link (switching/bandwidth_reliability.py): hand values of the
Lambert-W form, convexity of -ln s, and agreement with scipy SLSQP on random instances."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from airtune.allocation.switching.bandwidth_reliability import (
    log_success_coefficients,
    neg_log_success,
    reliability_bandwidth,
    stationarity_u,
)
from airtune.wireless.outage import ppp_success_probability

N0 = 10 ** (-17.4) / 1000
ALPHA, C1M = 3.76, 10 ** (-12.81) * 1000 ** 3.76


def instance(rng, k):
    d = rng.uniform(30, 400, k)
    p = rng.uniform(0.02, 0.2, k)
    A, C, delta = log_success_coefficients(d, p, N0, ALPHA, C1M, 1.27e-6, 0.2)
    rate = rng.choice([1.2e6, 2.4e6, 4.7e6], k) / 0.5
    w = rng.uniform(0.1, 2.0, k)
    return w, rate, A, C, delta, d, p


def test_coefficients_reproduce_the_ppp_closed_form():
    rng = np.random.default_rng(0)
    w, rate, A, C, delta, d, p = instance(rng, 6)
    b = rng.uniform(2e5, 3e6, 6)
    theta = 2 ** (rate / b) - 1
    s = ppp_success_probability(d, p, b, N0, theta, ALPHA, C1M, 1.27e-6, 0.2)
    np.testing.assert_allclose(np.exp(-neg_log_success(b, rate, A, C, delta)), s, rtol=1e-10)


def test_lambert_w_root_by_hand():
    # no interference: A[(u-1)e^u + 1] = target; target = A gives u = 1 (W0(0) = 0)
    assert stationarity_u(2.0, 2.0, 0.0, 1e6, 0.5) == pytest.approx(1.0, rel=1e-12)
    # target = A (1 + e^2): (u-1) e^u = e^2 -> u = 2
    assert stationarity_u(3.0 * (1 + math.e**2), 3.0, 0.0, 1e6, 0.5) == pytest.approx(2.0, rel=1e-12)


def test_newton_root_solves_the_stationarity_with_interference():
    rng = np.random.default_rng(1)
    w, rate, A, C, delta, *_ = instance(rng, 50)
    target = rng.uniform(1e-9, 1e-5, 50) / w
    u = stationarity_u(target, A, C, rate, delta)
    b = rate * math.log(2) / u
    h = 1e-6 * b
    slope = -(neg_log_success(b + h, rate, A, C, delta) - neg_log_success(b - h, rate, A, C, delta)) / (2 * h)
    np.testing.assert_allclose(slope, target, rtol=1e-5)


def test_neg_log_success_is_convex_decreasing_in_bandwidth():
    rng = np.random.default_rng(2)
    w, rate, A, C, delta, *_ = instance(rng, 20)
    b = np.geomspace(5e4, 2e7, 400)[:, None]
    h = neg_log_success(b, rate[None, :], A[None, :], C[None, :], delta)
    assert np.all(np.diff(h, axis=0) < 0)
    d1 = np.diff(h, axis=0) / np.diff(b, axis=0)
    assert np.all(np.diff(d1, axis=0) > -1e-12 * np.abs(d1[1:]))


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_scipy_slsqp(seed):
    rng = np.random.default_rng(10 + seed)
    k = int(rng.integers(2, 8))
    w, rate, A, C, delta, *_ = instance(rng, k)
    B = float(rng.uniform(2e6, 1e7))
    floor = np.full(k, 0.02 * B / k)
    res = reliability_bandwidth(w, rate, A, C, delta, B, min_bandwidth_hz=floor)
    assert res.converged and res.feasible
    assert res.bandwidth_hz.sum() == pytest.approx(B, rel=1e-9)
    assert np.all(res.bandwidth_hz >= floor * (1 - 1e-12))

    def f(z):
        return float(np.sum(w * neg_log_success(z * B, rate, A, C, delta)))

    scale = f(np.full(k, 1.0 / k))
    best = min((minimize(lambda z: f(z) / scale, z0, method="SLSQP", bounds=[(0.02 / k, 1.0)] * k,
                         constraints=[{"type": "eq", "fun": lambda z: z.sum() - 1.0}],
                         options={"ftol": 1e-14, "maxiter": 1000}) for z0 in
                (np.full(k, 1.0 / k), rng.dirichlet(np.ones(k)) * 0.9 + 0.1 / k)), key=lambda r: r.fun)
    assert res.objective <= best.fun * scale * (1 + 1e-7)
    assert res.objective == pytest.approx(best.fun * scale, rel=1e-5)


def test_flags_and_idle_devices():
    rng = np.random.default_rng(3)
    w, rate, A, C, delta, *_ = instance(rng, 4)
    bad = reliability_bandwidth(w, rate, A, C, delta, 1e6, min_bandwidth_hz=np.full(4, 5e5))
    assert not bad.feasible and bad.bandwidth_hz.sum() == pytest.approx(1e6)
    part = np.array([True, False, True, True])
    ok = reliability_bandwidth(w, rate, A, C, delta, 5e6, participating=part)
    assert ok.bandwidth_hz[1] == 0 and ok.bandwidth_hz.sum() == pytest.approx(5e6)
