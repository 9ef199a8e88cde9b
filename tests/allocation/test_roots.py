"""Vectorised bracketing root finders: agreement with scipy's brentq, per-element stopping."""

import numpy as np
import pytest
from scipy.optimize import brentq

from airtune.allocation.roots import bracket_root, false_position_point


def test_false_position_point_hand_computed():
    # line through (0, 2) and (4, -6): zero at 1
    assert false_position_point(0.0, 4.0, 2.0, -6.0) == pytest.approx(1.0)
    # equal values (no secant): the midpoint
    assert false_position_point(0.0, 4.0, 1.0, 1.0) == pytest.approx(2.0)


@pytest.mark.parametrize("method", ["bisection", "illinois"])
def test_agrees_with_brentq_on_random_monotone_functions(method):
    rng = np.random.default_rng(0)
    n = 50
    a, c, k = rng.uniform(0.1, 5, n), rng.uniform(-3, 3, n), rng.uniform(0.5, 3, n)

    def f(x, idx):  # increasing: a (x - c) + exp(k x) - exp(k c), root at c
        return a[idx] * (x - c[idx]) + np.exp(k[idx] * x) - np.exp(k[idx] * c[idx])

    lo, hi = c - rng.uniform(0.1, 4, n), c + rng.uniform(0.1, 4, n)
    idx = np.arange(n)
    x, it, ok = bracket_root(f, lo, hi, f(lo, idx), f(hi, idx), method=method, xtol=1e-13,
                             ftol=0.0 if method == "bisection" else 1e-13)
    ref = np.array([brentq(lambda t, i=i: f(np.array([t]), np.array([i]))[0], lo[i], hi[i],
                           xtol=1e-14) for i in range(n)])
    assert ok
    np.testing.assert_allclose(x, ref, atol=1e-11)
    np.testing.assert_allclose(x, c, atol=1e-11)
    if method == "bisection":
        assert it >= 40  # halving from a width of up to 8 to 1e-13
    else:
        assert it <= 25  # worst of 50 elements; bisection needs >= 40


def test_illinois_stays_bracketed_on_a_flat_then_steep_function():
    # plain false position stalls on x^9-like shapes; Illinois must still converge
    def f(x, idx):
        return x ** 9 - 0.5 ** 9

    x, it, ok = bracket_root(f, np.array([0.0]), np.array([1.0]), f(np.array([0.0]), 0),
                             f(np.array([1.0]), 0), method="illinois", xtol=1e-14, max_iter=200)
    assert ok and x[0] == pytest.approx(0.5, abs=1e-12)
    assert it < 60


def test_elements_stop_on_their_own_and_caps_are_reported():
    def f(x, idx, roots=np.array([0.3, 0.75])):
        return x - roots[idx]

    lo, hi, idx = np.zeros(2), np.ones(2), np.arange(2)
    x, it, ok = bracket_root(f, lo, hi, f(lo, idx), f(hi, idx), method="bisection", xtol=1e-12, max_iter=5)
    assert not ok and it == 5
    assert x[1] == 0.75  # dyadic: hit exactly after two halvings, then left alone
    assert abs(x[0] - 0.3) <= 2.0 ** -6  # still open at the cap: midpoint of its bracket
    x, it, ok = bracket_root(f, lo, hi, f(lo, idx), f(hi, idx), method="bisection", xtol=1e-12)
    assert ok and it == 40  # 2^-40 < 1e-12 < 2^-39
    assert x[0] == pytest.approx(0.3, abs=1e-12)
