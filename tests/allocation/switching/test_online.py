"""Online primal-dual step of eqs. (10)-(12) (switching/online.py): hand values and a scipy projection reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from airtune.allocation.switching.online import dual_step, primal_step, project_capped_box, round_relaxed


def test_dual_and_primal_steps_by_hand():
    lam = dual_step([0.0, 1.0], [[0.2, 0.0], [0.5, 0.5]], rho=0.5, step=2.0)
    np.testing.assert_allclose(lam, [0.6, 0.0])          # [0 + 2 (0.5 - 0.2)]^+, [1 + 2 (0.5 - 1)]^+
    x = primal_step([[0.0, 0.0]], [[-1.0, -0.5]], [0.0], step=0.4)
    np.testing.assert_allclose(x, [[0.4, 0.2]])          # inside the box: plain step
    x = primal_step([[0.5, 0.5]], [[-1.0, 1.0]], [0.0], step=0.5)
    np.testing.assert_allclose(x, [[1.0, 0.0]])          # y = (1, 0): already feasible
    x = primal_step([[0.0, 0.0]], [[-2.0, -2.0]], [0.0], step=0.5, eligible=[[True, False]])
    np.testing.assert_allclose(x, [[1.0, 0.0]])


@pytest.mark.parametrize("seed", range(5))
def test_projection_agrees_with_scipy(seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(0.3, 0.8, (6, 4))
    x = project_capped_box(y)
    for k in range(6):
        ref = minimize(lambda z: 0.5 * np.sum((z - y[k]) ** 2), np.full(4, 0.2), method="SLSQP",
                       bounds=[(0, 1)] * 4, constraints=[{"type": "ineq", "fun": lambda z: 1.0 - z.sum()}],
                       options={"ftol": 1e-14})
        np.testing.assert_allclose(x[k], ref.x, atol=1e-6)
    assert np.all(x.sum(axis=1) <= 1 + 1e-12) and np.all((x >= 0) & (x <= 1))


def test_rounding():
    x = np.array([[0.6, 0.3], [0.4, 0.45], [0.0, 0.0], [0.2, 0.25]])
    # participation is the relaxed sum (0.9, 0.85, 0, 0.45), the module the largest entry: device 1
    # spreads its mass over two near-equal modules and still takes part (entry-wise >= 1/2 would idle it)
    np.testing.assert_array_equal(round_relaxed(x, "threshold"), [0, 1, -1, -1])
    rng = np.random.default_rng(0)
    draws = np.array([round_relaxed(x, "randomized", rng) for _ in range(4000)])
    assert np.mean(draws[:, 0] == 0) == pytest.approx(0.6, abs=0.03)
    assert np.mean(draws[:, 1] == -1) == pytest.approx(0.15, abs=0.03)
    assert np.all(draws[:, 2] == -1)
    # the two roundings agree in expectation on who takes part: P(part) = sum_m x_m
    assert np.mean(draws[:, 3] >= 0) == pytest.approx(0.45, abs=0.03)
