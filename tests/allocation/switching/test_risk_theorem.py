"""Theorem-1-shaped risk bound (risk_theorem.py): hand values, exact marginals, outage weights."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from airtune.allocation.switching.risk_theorem import (
    TheoremCoefficients,
    initial_module_gap,
    module_gap_step,
    theorem_outage_weight,
    theorem_risk_gap,
    theorem_risk_marginal,
)

COEF = TheoremCoefficients(contraction=0.2, zeta1=0.125, noise=0.1, heterogeneity=0.5, capacity=1.0,
                           foundation_gap=1.0)


def test_gap_step_and_bound_by_hand():
    # K = 2 (D = 10, 30 -> weights 1/4, 3/4), M = 2 (ranks 4, 16), device 0 on module 0 (s = 0.8), device 1 idle.
    # mu/L = 0.2, zeta1 = 1/8: A_m = 0.8 + 0.1 (1 - Phi_m); floors f_k = 0.1 + 0.5 delta_k^2 = (0.1, 0.6) for delta (0, 1)
    # module 0: Phi = 0.2, A = 0.88, B = 0.25 * 0.1 * 0.2 + 0.75 * 0.6 = 0.455; G(t+1) = 0.88 * 0.5 + 0.455 = 0.895
    # module 1: Phi = 0,   A = 0.9,  B = 0.25 * 0.1 + 0.75 * 0.6 = 0.475;    G(t+1) = 0.9 * 0.75 + 0.475 = 1.15
    x, s, d, delta, gap = [[1, 0], [0, 0]], [0.8, 1.0], [10.0, 30.0], [0.0, 1.0], [0.5, 0.75]
    nxt = module_gap_step(gap, x, s, d, delta, COEF, empty_keeps=False)
    np.testing.assert_allclose(nxt, [0.895, 1.15], rtol=1e-12)
    # bound: mean(G(t+1) + r^-1/2) = mean(0.895 + 0.5, 1.15 + 0.25) = 1.3975
    assert theorem_risk_gap(x, s, d, [4, 16], gap, delta, COEF) == pytest.approx(1.3975, rel=1e-12)
    # committed (empty_keeps): module 1 received nothing and keeps 0.75; module 0 pi = 0.2:
    # 0.2 * 0.5 + 0.8 * 0.895 = 0.816
    np.testing.assert_allclose(module_gap_step(gap, x, s, d, delta, COEF), [0.816, 0.75], rtol=1e-12)


def test_initial_gap_is_the_foundation_model_minus_the_capacity_term():
    np.testing.assert_allclose(initial_module_gap([4, 16], COEF), [0.5, 0.75], rtol=1e-12)
    with pytest.raises(ValueError, match="foundation_gap=0.4"):
        initial_module_gap([4, 16], TheoremCoefficients(foundation_gap=0.4))


def test_coefficients_reject_a_bound_that_does_not_contract():
    with pytest.raises(ValueError, match="zeta1=0.25"):
        TheoremCoefficients(zeta1=0.25)


def random_instance(seed):
    rng = np.random.default_rng(seed)
    K, M = 6, 3
    x = np.eye(M)[rng.integers(0, M, K)] * (rng.random(K) < 0.7)[:, None]
    return x, rng.uniform(0.2, 0.95, K), rng.uniform(5, 60, K), rng.uniform(0, 2, K), rng.uniform(0.2, 1, M)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_marginal_is_the_exact_difference(seed):
    x, s, d, delta, gap = random_instance(seed)
    got = theorem_risk_marginal(x, s, d, gap, delta, COEF)
    for k, m in itertools.product(range(x.shape[0]), range(x.shape[1])):
        on, off = x.copy(), x.copy()
        on[k], off[k] = 0, 0
        on[k, m] = 1
        want = theorem_risk_gap(on, s, d, [4, 8, 16], gap, delta, COEF) - theorem_risk_gap(
            off, s, d, [4, 8, 16], gap, delta, COEF)
        assert got[k, m] == pytest.approx(want, rel=1e-10, abs=1e-15)
        assert got[k, m] < 0


@pytest.mark.parametrize("seed", [0, 1])
def test_outage_weight_matches_finite_differences(seed):
    x, s, d, delta, gap = random_instance(seed)
    w = theorem_outage_weight(x, s, d, gap, delta, COEF)
    for k in range(x.shape[0]):
        e = np.zeros(x.shape[0])
        e[k] = 1e-6
        fd = -(theorem_risk_gap(x, s + e, d, [4, 8, 16], gap, delta, COEF)
               - theorem_risk_gap(x, s - e, d, [4, 8, 16], gap, delta, COEF)) / 2e-6
        assert w[k] == pytest.approx(fd, rel=1e-6, abs=1e-12)
        assert (w[k] > 0) == bool(x[k].any())


def test_missing_a_dissimilar_device_costs_more():
    # the heterogeneity term: the same device, measured more dissimilar, lowers the bound more by taking part
    x, s, d, delta, gap = random_instance(0)
    more = delta.copy()
    more[0] += 1.0
    a = theorem_risk_marginal(x, s, d, gap, delta, COEF)
    b = theorem_risk_marginal(x, s, d, gap, more, COEF)
    assert np.all(b[0] < a[0]) and np.array_equal(np.delete(a, 0, 0), np.delete(b, 0, 0))
    # with c_het = 0 the dissimilarity has no effect
    flat = TheoremCoefficients(heterogeneity=0.0)
    np.testing.assert_array_equal(theorem_risk_marginal(x, s, d, gap, delta, flat),
                                  theorem_risk_marginal(x, s, d, gap, more, flat))


def test_worse_success_means_a_smaller_benefit_for_the_same_module_gap():
    # a device's benefit is proportional to its success: with equal gaps it prefers the more reliable module
    gap = np.array([0.6, 0.6])
    m4 = theorem_risk_marginal(np.zeros((1, 2)), [0.6], [20.0], gap, [0.0], COEF)
    m32 = theorem_risk_marginal(np.zeros((1, 2)), [0.15], [20.0], gap, [0.0], COEF)
    assert m4[0, 0] == pytest.approx(4 * m32[0, 0], rel=1e-12)
