"""Aggregate PPP interference as a positive-stable law: Kanter sampling, CDF, quantile, and the
law against an explicit simulation of interferer positions and fading."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import erfc

from airtune.wireless.interference import (
    interference_scale_w,
    positive_stable_cdf,
    positive_stable_quantile,
    sample_positive_stable,
    stable_index,
)


def ppp_interference_w(rng, trials, density, p_int, gain_1m, alpha, radius_m):
    """Explicit simulation: PPP in a disk of ``radius_m``, Exp(1) fading, gain c r^-alpha; (trials,)."""
    counts = rng.poisson(density * math.pi * radius_m ** 2, size=trials)
    owner = np.repeat(np.arange(trials), counts)
    r = radius_m * np.sqrt(rng.random(owner.size))
    rx = p_int * rng.exponential(size=owner.size) * gain_1m * r ** -alpha
    return np.bincount(owner, weights=rx, minlength=trials)


def test_cdf_at_delta_half_is_the_levy_law():
    # E exp(-sX) = exp(-sqrt(s)) is the Levy law with c = 1/2: F(x) = erfc(1 / (2 sqrt x))
    x = np.array([1e-3, 0.02, 0.1, 0.5, 1.0, 3.0, 10.0, 100.0, 1e4])
    np.testing.assert_allclose(positive_stable_cdf(x, 0.5), erfc(1 / (2 * np.sqrt(x))), atol=2e-6)
    assert positive_stable_cdf(np.array([0.0, -1.0]), 0.5).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("delta", [0.3, 2 / 3.76, 0.8])
def test_kanter_samples_have_the_laplace_transform_and_the_cdf(delta):
    x = sample_positive_stable(np.random.default_rng(1), delta, 200_000)
    for s in (0.1, 1.0, 5.0):
        emp = float(np.mean(np.exp(-s * x)))
        assert emp == pytest.approx(math.exp(-s ** delta), abs=4 * 0.5 / math.sqrt(x.size))
    for q in (0.05, 0.5, 0.9, 0.99):
        xq = positive_stable_quantile(q, delta)
        assert float(positive_stable_cdf(xq, delta)) == pytest.approx(q, abs=1e-9)
        assert float(np.mean(x <= xq)) == pytest.approx(q, abs=4 * math.sqrt(q * (1 - q) / x.size) + 1e-3)


def test_scale_matches_an_explicit_ppp_simulation():
    alpha, gain, p_int, density = 3.76, 10 ** (-1.63), 0.2, 1e-6
    scale = interference_scale_w(density, p_int, gain, alpha)
    delta = stable_index(alpha)
    rng = np.random.default_rng(7)
    sim = ppp_interference_w(rng, 20_000, density, p_int, gain, alpha, radius_m=20_000.0)
    law = scale * sample_positive_stable(rng, delta, 200_000)
    for q in (0.1, 0.5, 0.9):   # quantiles agree (the disk misses < 0.2 % of the Laplace exponent here)
        assert np.quantile(sim, q) == pytest.approx(np.quantile(law, q), rel=0.05)
    assert interference_scale_w(0.0, p_int, gain, alpha) == 0.0


def test_alpha_must_exceed_two():
    with pytest.raises(ValueError, match="exceed 2"):
        stable_index(2.0)
