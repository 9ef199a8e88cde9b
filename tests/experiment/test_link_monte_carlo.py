"""End to end, by Monte Carlo, for each link mode: rounds of the runner's radio pipeline
(channel step -> allocation -> ``radio_round``), then an independent simulation in the test of
interferer positions and fading that decodes every logged upload at its *charged* rate. The
empirical delivery frequency must match the logged success probability, and every charged rate
must be decodable exactly in the event that decided delivery."""

from __future__ import annotations

import math

import numpy as np
import pytest

from airtune.allocation.result import Allocation
from airtune.config.schema import WirelessConfig
from airtune.experiment.round import radio_round
from airtune.wireless.channel import init_channel, step_channel
from airtune.wireless.devices import sample_device_profiles
from airtune.wireless.link import link_from_config

K, N, ROUNDS, DENSITY = 20, 5, 40, 1e-6
TRIALS, RADIUS_M = 200, 15_000.0     # per logged upload; the disk misses < 0.3 % of the PPP exponent


def pipeline(mode: str, seed: int = 0):
    """``ROUNDS`` rounds of ``N`` random devices on equal bandwidth at full power; logged columns."""
    w = WirelessConfig(link=mode, interferer_density_per_m2=DENSITY, uplink_bandwidth_hz=5e6)
    lk = link_from_config(w)
    rng = np.random.default_rng(seed)
    ch = init_channel(rng, K, w.cell_radius_m, w.min_distance_m, w.path_loss_const_db, w.path_loss_slope_db)
    dev = sample_device_profiles(rng, K, cycles_per_sample=1e8)
    rows = []
    for _t in range(ROUNDS):
        ch = step_channel(ch, rng)
        sel = np.zeros(K, bool)
        sel[rng.choice(K, N, replace=False)] = True
        alloc = Allocation(sel, np.where(sel, w.uplink_bandwidth_hz / N, 0.0), np.where(sel, dev.max_power_w, 0.0),
                           0.0, True, 0, "")
        radio = radio_round(lk, ch, dev, alloc, np.where(sel, 2e6, 0.0), np.where(sel, 2e6, 0.0),
                            np.where(sel, 32.0, 0.0), rng)
        for k in np.flatnonzero(sel):
            rows.append(dict(d=ch.distance_m[k], h=ch.channel_gain[k], b=alloc.bandwidth_hz[k], p=alloc.power_w[k],
                             rate=radio.uplink_rate_bps[k], capacity=radio.capacity_bps[k],
                             success=radio.success_prob[k], delivered=bool(radio.delivered[k])))
    return lk, {key: np.array([r[key] for r in rows]) for key in rows[0]}


def simulate_decoding(lk, log, *, fade_desired: bool, seed: int = 11) -> np.ndarray:
    """Per upload, the fraction of ``TRIALS`` independent realisations (PPP interferers in a disk,
    Exp(1) fading on every link; the desired link's fading redrawn iff ``fade_desired``) in which
    the charged rate is decodable. Shape (uploads,)."""
    rng = np.random.default_rng(seed)
    n = log["rate"].size
    counts = rng.poisson(lk.interferer_density_per_m2 * math.pi * RADIUS_M ** 2, size=(n, TRIALS))
    owner = np.repeat(np.arange(n * TRIALS), counts.ravel())
    r = RADIUS_M * np.sqrt(rng.random(owner.size))
    rx = lk.interferer_power_w * rng.exponential(size=owner.size) * lk.path_gain_at_1m * r ** -lk.path_loss_exponent
    interference = np.bincount(owner, weights=rx, minlength=n * TRIALS).reshape(n, TRIALS)
    gain = (lk.mean_gain(log["d"])[:, None] * rng.exponential(size=(n, TRIALS)) if fade_desired
            else log["h"][:, None])
    sinr = log["p"][:, None] * gain / (interference + log["b"][:, None] * lk.noise_psd_w_per_hz)
    capacity = log["b"][:, None] * np.log2(1 + sinr)
    return np.mean(log["rate"][:, None] <= capacity, axis=1)


def check_logged_decodability(log):
    """Delivered iff the charged rate is at most the capacity of the realised SINR."""
    decodable = log["rate"] <= log["capacity"] * (1 + 1e-9)
    np.testing.assert_array_equal(log["delivered"], decodable)


def binomial_tol(p: np.ndarray, trials: int) -> float:
    return 4.0 * math.sqrt(float(np.sum(p * (1 - p))) / trials) + 1e-9


def test_fixed_rate_outage_matches_the_closed_form_over_fading_and_interference():
    lk, log = pipeline("fixed_rate_outage")
    check_logged_decodability(log)
    assert 0.1 < log["success"].mean() < 0.95                     # outage actually matters here
    np.testing.assert_allclose(log["rate"], log["b"] * np.log2(1 + lk.sinr_threshold), rtol=1e-12)
    freq = simulate_decoding(lk, log, fade_desired=True)          # statistical CSI: average over the fading
    assert abs(np.sum(freq - log["success"])) <= binomial_tol(log["success"], TRIALS) + 2e-3 * freq.size
    assert np.max(np.abs(freq - log["success"])) < 5 * 0.5 / math.sqrt(TRIALS)
    # the runner's own draws: delivered count against the logged probabilities
    assert abs(log["delivered"].sum() - log["success"].sum()) <= binomial_tol(log["success"], 1)


def test_adaptive_outage_meets_its_target_given_the_realised_fading():
    lk, log = pipeline("adaptive_outage")
    check_logged_decodability(log)
    np.testing.assert_allclose(log["success"], 1 - lk.target_outage)
    freq = simulate_decoding(lk, log, fade_desired=False)         # the rate was chosen for this fading
    assert abs(np.sum(freq - log["success"])) <= binomial_tol(log["success"], TRIALS) + 2e-3 * freq.size
    assert abs(log["delivered"].sum() - log["success"].sum()) <= binomial_tol(log["success"], 1)


def test_error_free_charges_the_shannon_rate_of_the_realised_snr():
    lk, log = pipeline("error_free")
    check_logged_decodability(log)
    assert log["delivered"].all() and (log["success"] == 1).all()
    snr = log["p"] * log["h"] / (log["b"] * lk.noise_psd_w_per_hz)
    np.testing.assert_allclose(log["rate"], log["b"] * np.log2(1 + snr), rtol=1e-9)
    np.testing.assert_allclose(log["rate"], log["capacity"], rtol=1e-9)


@pytest.mark.parametrize("mode", ["fixed_rate_outage", "adaptive_outage"])
def test_the_runner_draws_are_reproducible(mode):
    _, a = pipeline(mode, seed=5)
    _, b = pipeline(mode, seed=5)
    np.testing.assert_array_equal(a["delivered"], b["delivered"])
