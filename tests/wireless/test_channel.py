"""Hand-computed channel formulas, channel-state evolution and delivery sampling."""

import dataclasses
import math

import numpy as np
import pytest

from airtune.wireless import channel as ch
from airtune.wireless import outage as wo

# ---------------------------------------------------------------- path loss


def test_path_loss_hand_values():
    assert ch.path_loss_db(1000.0) == pytest.approx(128.1)
    assert ch.path_loss_db(100.0) == pytest.approx(90.5)
    assert ch.path_loss_db(500.0) == pytest.approx(128.1 + 37.6 * math.log10(0.5))
    assert ch.path_gain(100.0) == pytest.approx(10 ** (-9.05))
    np.testing.assert_allclose(ch.path_loss_db([10.0, 1000.0], 100.0, 30.0), [40.0, 100.0])


def test_power_law_constants_match_log_distance_model():
    assert ch.path_loss_exponent_from_slope(37.6) == pytest.approx(3.76)
    c = ch.path_gain_at_1m_from_db(128.1, 37.6)
    assert c == pytest.approx(10 ** (-(128.1 - 3 * 37.6) / 10))  # 10^-1.53
    d = np.array([1.0, 35.0, 100.0, 500.0, 2000.0])
    np.testing.assert_allclose(c * d ** -3.76, ch.path_gain(d), rtol=1e-12)
    c2 = ch.path_gain_at_1m_from_db(140.7, 36.7)
    alpha2 = ch.path_loss_exponent_from_slope(36.7)
    np.testing.assert_allclose(c2 * d**-alpha2, ch.path_gain(d, 140.7, 36.7), rtol=1e-12)


# ---------------------------------------------------------------- SNR / rate


def test_shannon_rate_worked_example():
    # p g = 0.1 * 6e-13 = 6e-14 W; N0 b = 4e-21 * 1e6 = 4e-15 W; SNR = 15 -> 4 bit/s/Hz.
    assert ch.snr(0.1, 6e-13, 4e-21, 1e6) == pytest.approx(15.0)
    assert ch.shannon_rate_bps(1e6, 0.1, 6e-13, 4e-21) == pytest.approx(4e6)
    # With 2e-15 W interference the SINR is 10.
    assert ch.shannon_rate_bps(1e6, 0.1, 6e-13, 4e-21, 2e-15) == pytest.approx(1e6 * math.log2(11))


def test_shannon_rate_vectorised_and_zero_bandwidth_exact():
    b = np.array([0.0, 1e6, 2e6, 0.0])
    g = np.array([1e-10, 6e-13, 6e-13, 0.0])
    with np.errstate(all="raise"):
        rate = ch.shannon_rate_bps(b, 0.1, g, 4e-21)
    assert rate.shape == (4,)
    assert rate[0] == 0.0 and rate[3] == 0.0
    assert rate[1] == pytest.approx(4e6)
    assert rate[2] == pytest.approx(2e6 * math.log2(1 + 7.5))
    assert np.all(np.isfinite(rate))


def test_snr_edge_cases():
    with np.errstate(all="raise"):
        assert ch.snr(0.0, 1.0, 4e-21, 0.0) == 0.0
        assert ch.snr(1.0, 1.0, 4e-21, 0.0) == np.inf


def test_sinr_threshold_for_rate():
    np.testing.assert_allclose(wo.sinr_threshold_for_rate([1e6, 2e6, 0.0], 1e6), [1.0, 3.0, 0.0])
    with np.errstate(all="raise"):
        assert wo.sinr_threshold_for_rate(1e6, 0.0) == np.inf


# ---------------------------------------------------------------- PPP closed form


PPP = dict(noise_psd_w_per_hz=4e-21, path_gain_at_1m=1e-3, interferer_power_w=0.2)


def test_ppp_hand_value_alpha_4():
    # alpha = 4: Gamma(1.5) Gamma(0.5) = pi / 2.  Interference exponent: 1e-4 pi 50^2 (pi/2).
    # Noise exponent: theta d^4 b N0 / (p c) = 50^4 * 1e6 * 4e-21 / (0.2 * 1e-6) = 0.125.
    kw = dict(PPP, path_gain_at_1m=1e-6)
    s = wo.ppp_success_probability(50.0, 0.2, 1e6, sinr_threshold=1.0, path_loss_exponent=4.0,
                                   interferer_density_per_m2=1e-4, **kw)
    expected = math.exp(-0.125) * math.exp(-1e-4 * math.pi * 2500 * math.pi / 2)
    assert s == pytest.approx(expected, rel=1e-12)
    q = wo.outage_probability(50.0, 0.2, 1e6, sinr_threshold=1.0, path_loss_exponent=4.0,
                              interferer_density_per_m2=1e-4, **kw)
    assert q == pytest.approx(1 - expected, rel=1e-12)


def test_ppp_without_interference_is_rayleigh_noise_only():
    # Pr[Exp(1) >= theta N0 b / (p beta(d))] with beta from the log-distance model.
    d = np.array([50.0, 200.0, 500.0])
    theta, b, n0, p = 2.0, 1e7, 3.98e-21, 0.2
    s = wo.ppp_success_probability(
        d, p, b, n0, theta, ch.path_loss_exponent_from_slope(37.6),
        ch.path_gain_at_1m_from_db(128.1, 37.6), 0.0, 0.2,
    )
    np.testing.assert_allclose(s, np.exp(-theta * n0 * b / (p * ch.path_gain(d))), rtol=1e-10)


def test_ppp_edge_cases():
    kw = dict(sinr_threshold=1.0, path_loss_exponent=3.5, interferer_density_per_m2=1e-5, **PPP)
    with np.errstate(all="raise"):
        d, p = np.array([100.0, 100.0, 1e-9]), np.array([0.2, 0.0, 0.2])
        s = wo.ppp_success_probability(d, p, 1e6, **kw)
    assert s[1] == 0.0
    assert 0.0 < s[0] < 1.0
    assert s[2] == pytest.approx(1.0)
    assert wo.ppp_success_probability(100.0, 0.2, 0.0, sinr_threshold=1.0, path_loss_exponent=3.5,
                                      interferer_density_per_m2=0.0, **PPP) == 1.0
    # monotone: farther and higher threshold -> less success
    far = wo.ppp_success_probability(np.array([50.0, 100.0, 200.0]), 0.2, 1e6, **kw)
    assert np.all(np.diff(far) < 0)
    for alpha in (2.0, 1.5):
        with pytest.raises(ValueError, match="path_loss_exponent"):
            wo.ppp_success_probability(100.0, 0.2, 1e6, 4e-21, 1.0, alpha, 1e-3, 1e-5, 0.2)


# ---------------------------------------------------------------- channel state


def test_init_and_step_channel():
    state = ch.init_channel(np.random.default_rng(3), 50, 500.0, 10.0)
    assert state.num_devices == 50
    for arr in (state.distance_m, state.path_gain, state.fading, state.channel_gain):
        assert arr.shape == (50,)
    np.testing.assert_allclose(state.channel_gain, state.path_gain * state.fading)
    np.testing.assert_allclose(state.path_gain, ch.path_gain(state.distance_m))
    nxt = ch.step_channel(state, np.random.default_rng(4))
    np.testing.assert_array_equal(nxt.distance_m, state.distance_m)
    np.testing.assert_array_equal(nxt.path_gain, state.path_gain)
    assert not np.array_equal(nxt.fading, state.fading)
    np.testing.assert_allclose(nxt.channel_gain, nxt.path_gain * nxt.fading)


def test_channel_state_is_immutable():
    state = ch.init_channel(np.random.default_rng(0), 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.fading = np.ones(4)  # type: ignore[misc]
    with pytest.raises(ValueError):
        state.channel_gain[0] = 1.0
    with pytest.raises(ValueError, match="shape"):
        ch.ChannelState(distance_m=np.ones(3), path_gain=np.ones(3), fading=np.ones(2))


def test_no_fading_and_unknown_fading():
    state = ch.init_channel(np.random.default_rng(0), 10, fading="none")
    np.testing.assert_array_equal(state.channel_gain, state.path_gain)
    from airtune.errors import RegistryError

    with pytest.raises(RegistryError, match="unknown fading model 'nakagami'.*rayleigh"):
        ch.init_channel(np.random.default_rng(0), 10, fading="nakagami")


def test_channel_determinism_under_seed():
    def run(seed):
        rng = np.random.default_rng(seed)
        s = ch.init_channel(rng, 20, 500.0, 10.0)
        for _ in range(3):
            s = ch.step_channel(s, rng)
        return s.channel_gain

    np.testing.assert_array_equal(run(11), run(11))
    assert not np.array_equal(run(11), run(12))


def test_rayleigh_fading_statistics():
    g = ch.rayleigh_fading(np.random.default_rng(0), 40_000)
    assert g.shape == (40_000,) and np.all(g >= 0)
    assert g.mean() == pytest.approx(1.0, abs=0.02)
    assert np.mean(g >= 1.0) == pytest.approx(math.exp(-1), abs=0.01)


# ---------------------------------------------------------------- delivery


def test_sample_delivery():
    rng = np.random.default_rng(0)
    out = wo.sample_delivery(rng, np.array([0.0, 1.0, 0.0, 1.0]))
    np.testing.assert_array_equal(out, [False, True, False, True])
    many = wo.sample_delivery(rng, np.full(20_000, 0.3))
    assert many.dtype == bool and many.mean() == pytest.approx(0.3, abs=0.015)
    np.testing.assert_array_equal(
        wo.sample_delivery(np.random.default_rng(5), np.full(10, 0.5)),
        wo.sample_delivery(np.random.default_rng(5), np.full(10, 0.5)),
    )
    with pytest.raises(ValueError):
        wo.sample_delivery(rng, np.array([0.5, 1.2]))
    with pytest.raises(ValueError):
        wo.sample_delivery(rng, np.array([np.nan]))
