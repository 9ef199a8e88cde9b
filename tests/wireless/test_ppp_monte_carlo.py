"""Monte Carlo check of the Rayleigh + PPP success-probability closed form (papers.md §3.3 [R]).

Interferers are a homogeneous PPP in a disk of radius 25 x the link distance (the closed form
integrates over the whole plane; the truncation changes the success probability by < 0.003 at
these points), every link has Exp(1) power fading and gain c r^-alpha.
"""

import math

import numpy as np
import pytest

from airtune.wireless.channel import path_gain_at_1m_from_db, path_loss_exponent_from_slope
from airtune.wireless.outage import ppp_success_probability


def simulate_success(rng, *, distance_m, power_w, bandwidth_hz, noise_psd_w_per_hz,
                     sinr_threshold, alpha, gain_at_1m, density_per_m2, interferer_power_w,
                     trials, disk_factor=25.0):
    """Fraction of trials with SINR >= threshold (all trials in one vectorised pass)."""
    radius_m = disk_factor * distance_m
    counts = rng.poisson(density_per_m2 * math.pi * radius_m**2, size=trials)  # (trials,)
    owner = np.repeat(np.arange(trials), counts)  # (points,)
    r = radius_m * np.sqrt(rng.random(owner.size))  # uniform in the disk
    rx = interferer_power_w * rng.exponential(size=owner.size) * gain_at_1m * r**-alpha
    interference_w = np.bincount(owner, weights=rx, minlength=trials)  # (trials,)
    signal_w = power_w * rng.exponential(size=trials) * gain_at_1m * distance_m**-alpha
    sinr = signal_w / (interference_w + noise_psd_w_per_hz * bandwidth_hz)
    return float(np.mean(sinr >= sinr_threshold))


CASES = {
    # alpha = 4, noise term exp(-0.2), lambda pi d^2 = 0.3
    "alpha4_noise": dict(distance_m=100.0, power_w=0.2, bandwidth_hz=1e6, noise_psd_w_per_hz=4e-21,
                         sinr_threshold=1.0, alpha=4.0, gain_at_1m=4e-3,
                         density_per_m2=0.3 / (math.pi * 100.0**2), interferer_power_w=0.2),
    # the 128.1 + 37.6 log10(d_km) model at 500 m, 10 MHz, -174 dBm/Hz, theta = 3 dB
    "3gpp_500m": dict(distance_m=500.0, power_w=0.2, bandwidth_hz=1e7,
                      noise_psd_w_per_hz=3.981e-21, sinr_threshold=2.0,
                      alpha=path_loss_exponent_from_slope(37.6),
                      gain_at_1m=path_gain_at_1m_from_db(128.1, 37.6),
                      density_per_m2=0.25 / (math.pi * 500.0**2), interferer_power_w=0.2),
    # alpha = 3.5, stronger interferers, no noise
    "alpha3.5_no_noise": dict(distance_m=50.0, power_w=0.1, bandwidth_hz=1e6,
                              noise_psd_w_per_hz=0.0,
                              sinr_threshold=0.5, alpha=3.5, gain_at_1m=1e-3,
                              density_per_m2=0.2 / (math.pi * 50.0**2), interferer_power_w=0.2),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_closed_form_matches_monte_carlo(name):
    case = CASES[name]
    closed = float(ppp_success_probability(
        case["distance_m"], case["power_w"], case["bandwidth_hz"], case["noise_psd_w_per_hz"],
        case["sinr_threshold"], case["alpha"], case["gain_at_1m"], case["density_per_m2"],
        case["interferer_power_w"],
    ))
    assert 0.2 < closed < 0.8  # a point where the check has teeth
    mc = simulate_success(np.random.default_rng(2024), trials=30_000, **case)
    assert mc == pytest.approx(closed, abs=0.01)
