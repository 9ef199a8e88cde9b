"""Lambert-W minimum bandwidth (shared kernel): hand cases and scipy references."""

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from airtune.allocation import min_bandwidth as bw

N0 = 4e-21  # W/Hz (-174 dBm/Hz)


def rate(b, a):
    return b * np.log2(1.0 + a / b)


# --------------------------------------------------------------------------- minimum bandwidth


def test_lambert_w_hand_cases():
    # a = p h / N0 = 0.2 * 1e-13 / 4e-21 = 5e6 Hz.  R = a -> y = 2 -> b = a;  R = 2a/3 -> y = 4.
    a = 0.2 * 1e-13 / N0
    assert bw.snr_bandwidth_hz(0.2, 1e-13, N0) == pytest.approx(5e6, rel=1e-15)
    b = bw.min_bandwidth_for_rate([a, 2 * a / 3], 0.2, 1e-13, N0)
    np.testing.assert_allclose(b, [a, a / 3], rtol=1e-12)


def test_lambert_w_matches_brentq_and_meets_rate():
    a, r_bps = 5e6, 2e6  # c = R ln2 / a = 0.277
    b = float(bw.min_bandwidth_for_rate(r_bps, 1.0, a, 1.0))
    assert rate(b, a) == pytest.approx(r_bps, rel=1e-9)
    ref = brentq(lambda x: rate(x, a) - r_bps, 1.0, 1e12, xtol=1e-9, rtol=1e-15)
    assert b == pytest.approx(ref, rel=1e-9)


def test_lambert_w_accurate_over_all_c():
    a = 5e6
    c = np.array([1e-12, 1e-6, 1e-3, 0.1, 0.5, 0.9, 0.99, 0.9999, 1 - 1e-7])
    r_bps = c * a / math.log(2.0)
    b = bw.min_bandwidth_for_rate(r_bps, 1.0, a, 1.0)
    np.testing.assert_allclose(rate(b, a), r_bps, rtol=1e-9)
    assert np.all(np.diff(b) > 0)  # more rate needs more bandwidth


def test_infeasible_and_zero_rate():
    a = 5e6
    cap = a / math.log(2.0)  # infinite-bandwidth capacity
    b = bw.min_bandwidth_for_rate([0.0, cap, 2 * cap, 1e6, 0.0], 1.0, [a, a, a, 0.0, 0.0], 1.0)
    np.testing.assert_array_equal(b, [0.0, np.inf, np.inf, np.inf, 0.0])


def test_min_bandwidth_for_deadline():
    s, p, h = np.array([1e6, 4e6, 0.0, 1e6, 1e6]), 0.2, 1e-13
    dt = np.array([0.5, 1.0, 0.3, 0.0, -1.0])
    b = bw.min_bandwidth_for_deadline(s, dt, p, h, N0)
    assert np.isinf(b[3]) and np.isinf(b[4]) and b[2] == 0.0
    upload_s = s[:2] / rate(b[:2], p * h / N0)
    np.testing.assert_allclose(upload_s, dt[:2], rtol=1e-9)


# --------------------------------------------------------------------------- marginal price
