"""Model switching (dual ascent, greedy, one-shot) and the risk-gap bound it linearises.

References: brute-force enumeration of every assignment (K <= 5, M <= 3) for the integer
optimum, scipy.optimize.linprog for the LP relaxation, hand-computed bound values.
"""

import dataclasses
import itertools

import numpy as np
import pytest
from scipy.optimize import linprog

from airtune.allocation.switching import assignment as sw
from airtune.allocation.switching import problem as sp
from airtune.allocation.switching import risk

# --------------------------------------------------------------------------- references


def brute_force(cost, res, cap, elig):
    """Integer optimum by enumerating all (M+1)^K assignments (vectorised)."""
    k_dev, m_mod = cost.shape
    mods = np.array(list(itertools.product(range(-1, m_mod), repeat=k_dev)))  # (N, K)
    on = mods >= 0
    idx = np.where(on, mods, 0)
    rows = np.arange(k_dev)[None, :]
    c = np.where(on, cost[rows, idx], 0.0)
    a = np.where(on, res[rows, idx], 0.0)
    ok = np.all(~on | elig[rows, idx], axis=1)
    cap = np.atleast_1d(cap)
    if cap.size == 1:
        ok &= a.sum(axis=1) <= cap[0] + 1e-12
    else:
        for m in range(m_mod):
            ok &= np.where(mods == m, a, 0.0).sum(axis=1) <= cap[m] + 1e-12
    vals = np.where(ok, c.sum(axis=1), np.inf)
    return float(vals.min())


def lp_relaxation(cost, res, cap, elig):
    k_dev, m_mod = cost.shape
    a_ub, b_ub = [], []
    for k in range(k_dev):
        row = np.zeros((k_dev, m_mod))
        row[k] = 1.0
        a_ub.append(row.ravel())
        b_ub.append(1.0)
    cap = np.atleast_1d(cap)
    if cap.size == 1:
        a_ub.append(res.ravel())
        b_ub.append(cap[0])
    else:
        for m in range(m_mod):
            row = np.zeros((k_dev, m_mod))
            row[:, m] = res[:, m]
            a_ub.append(row.ravel())
            b_ub.append(cap[m])
    bounds = [(0.0, 1.0 if e else 0.0) for e in elig.ravel()]
    out = linprog(cost.ravel(), A_ub=np.array(a_ub), b_ub=b_ub, bounds=bounds, method="highs")
    assert out.status == 0
    return float(out.fun)


def random_instance(rng, per_module):
    k_dev, m_mod = int(rng.integers(1, 6)), int(rng.integers(1, 4))
    cost = rng.normal(-1.0, 1.0, (k_dev, m_mod))
    res = rng.uniform(0.1, 1.0, (k_dev, m_mod))
    elig = rng.random((k_dev, m_mod)) < 0.8
    cap = rng.uniform(0.2, 1.5, m_mod) if per_module else float(rng.uniform(0.2, 1.5))
    return cost, res, cap, elig


# --------------------------------------------------------------------------- risk bound


def test_risk_bound_hand_computed():
    # module 0: rank 4, both devices: N = 0.5*8 + 1*12 = 16, D0 = 9 -> sqrt(4/25) = 0.4
    coef = risk.RiskCoefficients(capacity=1.0, capacity_exponent=1.0, generalisation=1.0,
                                 complexity_per_rank=1.0, heterogeneity=1.0, prior_samples=9.0,
                                 idle_gap=2.0)
    x = np.array([[1, 0], [1, 0], [0, 0]])
    div = np.array([[0.1, 0.3], [0.2, 0.05], [0.0, 0.0]])
    g = risk.risk_gap_bound(x, [0.5, 1.0, 1.0], [8.0, 12.0, 5.0], [4.0, 16.0], div, coef)
    # device terms 0.25+0.4+0.1 = 0.75, 0.25+0.4+0.2 = 0.85, idle 2.0 -> mean 3.6/3
    assert g == pytest.approx(1.2, rel=1e-12)
    # default idle gap: worst empty-module gap per device, max(0.25+2/3+0.1, 0.0625+4/3+0.3)
    coef0 = dataclasses.replace(coef, idle_gap=None)
    x2 = np.zeros((1, 2))
    assert risk.risk_gap_bound(x2, [1.0], [5.0], [4.0, 16.0], div[:1], coef0) == pytest.approx(
        0.0625 + 4.0 / 3.0 + 0.3, rel=1e-12)


def _random_risk_args(rng, k_dev=5, m_mod=3):
    x = np.zeros((k_dev, m_mod))
    pick = rng.integers(-1, m_mod, k_dev)
    x[np.flatnonzero(pick >= 0), pick[pick >= 0]] = 1.0
    return (x, rng.uniform(0.2, 1.0, k_dev), rng.uniform(10, 100, k_dev),
            np.array([4.0, 8.0, 16.0])[:m_mod], rng.uniform(0, 0.5, (k_dev, m_mod)))


def test_risk_marginal_is_exact_difference_and_nonpositive():
    rng = np.random.default_rng(3)
    x, s, d, r, div = _random_risk_args(rng)
    delta = risk.risk_gap_marginal(x, s, d, r, div)
    for k in range(x.shape[0]):
        base = x.copy()
        base[k] = 0.0
        g0 = risk.risk_gap_bound(base, s, d, r, div)
        for m in range(x.shape[1]):
            moved = base.copy()
            moved[k, m] = 1.0
            assert delta[k, m] == pytest.approx(risk.risk_gap_bound(moved, s, d, r, div) - g0,
                                                rel=1e-10, abs=1e-13)
    assert np.all(delta <= 1e-15)  # taking part never raises the bound (default idle gap)


def test_risk_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    x, s, d, r, div = _random_risk_args(rng)
    x = 0.3 + 0.4 * rng.random(x.shape) / x.shape[1]  # relaxed interior point
    grad = risk.risk_gap_gradient(x, s, d, r, div)
    eps = 1e-6
    for k, m in itertools.product(range(x.shape[0]), range(x.shape[1])):
        xp, xm = x.copy(), x.copy()
        xp[k, m] += eps
        xm[k, m] -= eps
        fd = (risk.risk_gap_bound(xp, s, d, r, div) - risk.risk_gap_bound(xm, s, d, r, div)) / (
            2 * eps)
        assert grad[k, m] == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_risk_coefficients_validated():
    with pytest.raises(ValueError, match="prior_samples"):
        risk.RiskCoefficients(prior_samples=0.0)


# --------------------------------------------------------------------------- helpers


def test_costs_and_participation_queue_hand_values():
    c = sp.switching_costs([[-0.1, -0.2]], [[1.0, 3.0]], [0.5], v=10.0,
                           participation_backlog=[0.25])
    np.testing.assert_allclose(c, [[-1.0 + 0.5 - 0.25, -2.0 + 1.5 - 0.25]])
    h = sp.step_participation_queues([0.0, 0.3, 0.1], [[1, 0], [0, 0], [0, 0]], 0.2)
    np.testing.assert_allclose(h, [0.0, 0.5, 0.3])


def test_repair_drops_worst_ratio_hand_case():
    cost = np.array([[-1.0], [-2.0], [-3.0]])
    res = np.full((3, 1), 0.6)
    out = sp.repair_assignment([0, 0, 0], cost, res, 1.0)  # excess 0.8: drop two cheapest
    np.testing.assert_array_equal(out, [-1, -1, 0])
    # per-module capacity: the second module has room, a dropped device moves there on refill
    cost2 = np.array([[-1.0, -0.5], [-2.0, -5.0], [-3.0, -0.1]])
    res2 = np.array([[0.6, 0.6], [0.6, 0.6], [0.6, 0.6]])
    out2 = sp.repair_assignment([0, 0, 0], cost2, res2, [1.0, 1.0])
    # module 0 drops devices 0 and 1 (ratios 1.7, 3.3 < 5); both propose module 1 (room
    # for one): device 1 wins on benefit per resource (5/0.6 > 0.5/0.6)
    np.testing.assert_array_equal(out2, [-1, 1, 0])
    np.testing.assert_array_equal(
        sp.repair_assignment([0, 0, 0], cost2, res2, [1.0, 1.0], fill=False), [-1, -1, 0])
    # an ineligible assignment is dropped even with room to spare
    elig = np.array([[True, True], [False, True], [True, True]])
    np.testing.assert_array_equal(
        sp.repair_assignment([0, 0, -1], cost2, res2, 10.0, elig, fill=False), [0, -1, -1])


# --------------------------------------------------------------------------- dual ascent


@pytest.mark.parametrize("per_module", [False, True])
def test_dual_ascent_against_brute_force_and_linprog(per_module):
    rng = np.random.default_rng(11 + per_module)
    rel_gaps = []
    for _ in range(40):
        cost, res, cap, elig = random_instance(rng, per_module)
        out = sw.switch_dual_ascent(cost, res, cap, elig)
        opt = brute_force(cost, res, cap, elig)
        lp = lp_relaxation(cost, res, cap, elig)
        x = out.x
        assert out.feasible and x.sum(axis=1).max() <= 1 and not np.any(x & ~elig)
        assert out.primal_objective == pytest.approx(float(np.sum(cost[x])), abs=1e-12)
        assert lp <= opt + 1e-9  # LP relaxation is a lower bound
        assert out.dual_objective <= lp + 1e-9  # weak duality: d(mu) <= LP value
        assert out.primal_objective >= opt - 1e-9  # feasible points cannot beat the optimum
        assert out.primal_objective - opt <= out.gap + 1e-9  # documented a-posteriori gap
        n_constraints = np.atleast_1d(cap).size
        best_single = float(np.max(np.where(elig, np.maximum(-cost, 0.0), 0.0), initial=0.0))
        assert out.primal_objective - opt <= n_constraints * best_single + 1e-9
        rel_gaps.append((out.primal_objective - opt) / max(abs(opt), 1e-12))
    assert np.mean(rel_gaps) < 0.05
    assert np.mean(np.array(rel_gaps) <= 1e-9) > 0.75  # optimal on most tiny instances


def test_dual_ascent_exact_when_coupling_is_slack():
    rng = np.random.default_rng(5)
    for _ in range(20):
        cost, res, _, elig = random_instance(rng, per_module=False)
        cap = float(res.sum()) + 1.0  # nothing can violate it
        out = sw.switch_dual_ascent(cost, res, cap, elig)
        assert out.converged and out.iterations == 1 and out.gap == pytest.approx(0.0, abs=1e-12)
        assert out.primal_objective == pytest.approx(brute_force(cost, res, cap, elig), abs=1e-12)
        np.testing.assert_array_equal(out.mu, [0.0])


def test_dual_converges_to_lp_value_with_more_iterations():
    rng = np.random.default_rng(8)
    cost, res = rng.normal(-1, 1, (5, 3)), rng.uniform(0.1, 1.0, (5, 3))
    elig = np.ones((5, 3), bool)
    lp = lp_relaxation(cost, res, 1.0, elig)
    out = sw.switch_dual_ascent(cost, res, 1.0, elig, max_iter=3000, tol=0.0)
    assert out.dual_objective <= lp + 1e-9
    assert out.dual_objective == pytest.approx(lp, rel=1e-2, abs=1e-3)
    assert out.x_relaxed.shape == (5, 3) and np.all(out.x_relaxed.sum(axis=1) <= 1 + 1e-12)


def test_dual_ascent_beats_or_ties_greedy_and_flags():
    rng = np.random.default_rng(9)
    k_dev, m_mod = 300, 4
    cost = rng.normal(-1, 1, (k_dev, m_mod))
    res = rng.uniform(0.1, 1.0, (k_dev, m_mod))
    dual = sw.switch_dual_ascent(cost, res, 20.0)
    greedy = sw.switch_greedy(cost, res, 20.0)
    assert dual.feasible and greedy.feasible
    assert dual.primal_objective <= greedy.primal_objective + 1e-12
    assert dual.usage[0] <= 20.0 * (1 + 1e-12)
    assert np.isfinite(dual.gap) and dual.gap >= 0
    if not dual.converged:
        assert "max_iter" in dual.message
    assert greedy.dual_objective == -np.inf and greedy.iterations == 0


def test_patience_stops_early_at_a_point_it_had_found():
    rng = np.random.default_rng(9)
    cost, res = rng.normal(-1, 1, (300, 4)), rng.uniform(0.1, 1.0, (300, 4))
    full = sw.switch_dual_ascent(cost, res, 20.0)
    short = sw.switch_dual_ascent(cost, res, 20.0, patience=5)
    assert short.iterations < full.iterations and "no better repaired point for 5" in short.message
    assert short.feasible and not short.converged
    assert short.primal_objective >= full.primal_objective - 1e-12  # a prefix of the same run
    # the same run, cut: max_iter = short.iterations gives the identical point
    cut = sw.switch_dual_ascent(cost, res, 20.0, max_iter=short.iterations)
    np.testing.assert_array_equal(cut.x, short.x)


def test_infeasible_capacity_is_data_not_exception():
    out = sw.switch_dual_ascent(-np.ones((3, 2)), np.ones((3, 2)), -1.0)
    assert not out.feasible and not out.converged and "negative" in out.message
    assert not out.x.any()


def test_result_is_frozen_and_converts_to_allocation():
    out = sw.switch_dual_ascent([[-1.0, -2.0], [1.0, 2.0]], [[1.0, 1.0], [1.0, 1.0]], 5.0)
    np.testing.assert_array_equal(out.module, [1, -1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.mu = np.zeros(1)  # type: ignore[misc]
    with pytest.raises(ValueError):
        out.x[0, 0] = True
    alloc = out.to_allocation(bandwidth_hz=[1e6, 1e6], power_w=[0.1, 0.1])
    np.testing.assert_array_equal(alloc.selected, [True, False])
    np.testing.assert_array_equal(alloc.bandwidth_hz, [1e6, 0.0])
    assert alloc.constraint_violations(2e6, 0.2) == []
    np.testing.assert_array_equal(alloc.extra["module"], [1, -1])


def test_one_shot_keeps_the_first_decision():
    rng = np.random.default_rng(2)
    cost, res = rng.normal(-1, 1, (8, 3)), rng.uniform(0.1, 1.0, (8, 3))
    first, kept = sw.switch_one_shot(None, cost, res, 3.0)
    np.testing.assert_array_equal(first.module, kept)
    later, kept2 = sw.switch_one_shot(kept, rng.normal(-1, 1, (8, 3)), res, 3.0)
    np.testing.assert_array_equal(kept2, kept)
    m = later.module
    assert np.all((m == -1) | (m == kept)) and later.feasible  # never switches, only drops
    always = sw.switch_one_shot(kept, np.ones((8, 3)), res, 100.0)[0]
    np.testing.assert_array_equal(always.module, kept)  # "always": takes part even at a cost
    picky = sw.switch_one_shot(kept, np.ones((8, 3)), res, 100.0, participate="if_beneficial")[0]
    assert not picky.x.any()
