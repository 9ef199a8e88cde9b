"""The link model: the charged rate per mode by hand, the success probability of the delivery
event, delivery iff the charged rate is decodable, the downlink share, and config conversion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from airtune.config.schema import WirelessConfig
from airtune.wireless.interference import positive_stable_cdf, positive_stable_quantile
from airtune.wireless.link import link_from_config
from airtune.wireless.outage import ppp_success_probability

N0 = 10 ** (-17.4) / 1000


def link(**kw):
    return link_from_config(WirelessConfig(**kw))


def test_config_boundary_converts_db_and_dbm():
    lk = link(link="fixed_rate_outage", sinr_threshold_db=3.0, server_power_dbm=43.0, interferer_power_dbm=20.0)
    assert lk.sinr_threshold == pytest.approx(10 ** 0.3)
    assert lk.server_power_w == pytest.approx(10 ** 4.3 / 1000) and lk.interferer_power_w == pytest.approx(0.1)
    assert lk.noise_psd_w_per_hz == pytest.approx(N0) and lk.path_loss_exponent == pytest.approx(3.76)
    assert lk.csi == "statistical" and link(link="error_free").csi == "instantaneous"
    assert link(link="fixed_rate_outage", csi="instantaneous").csi == "instantaneous"


def test_charged_rates_by_hand():
    b, p, h = np.array([1e6, 2e6]), np.array([0.2, 0.1]), np.array([1e-12, 4e-13])
    snr = p * h / (b * N0)
    np.testing.assert_allclose(link(link="error_free").uplink_rate_bps(b, p, h), b * np.log2(1 + snr), rtol=1e-12)
    fixed = link(link="fixed_rate_outage", sinr_threshold_db=10 * math.log10(3.0))
    np.testing.assert_allclose(fixed.uplink_rate_bps(b, p, h), b * 2.0, rtol=1e-12)   # log2(1 + 3) = 2
    ad = link(link="adaptive_outage", target_outage=0.2)
    margin = ad.interference_scale_w * positive_stable_quantile(0.8, ad.delta)
    assert ad.interference_margin_w == pytest.approx(margin, rel=1e-12) and margin > 0
    np.testing.assert_allclose(ad.uplink_rate_bps(b, p, h), b * np.log2(1 + p * h / (margin + b * N0)), rtol=1e-12)


def test_success_probability_is_that_of_the_delivery_event():
    d, b, p = np.array([100.0, 300.0]), np.array([1e6, 1e6]), np.array([0.2, 0.2])
    fixed = link(link="fixed_rate_outage", interferer_density_per_m2=1e-6)
    closed = ppp_success_probability(d, p, b, N0, 1.0, fixed.path_loss_exponent, fixed.path_gain_at_1m, 1e-6,
                                     fixed.interferer_power_w)
    np.testing.assert_allclose(fixed.success_probability(d, b, p, fixed.mean_gain(d)), closed, rtol=1e-12)
    inst = link(link="fixed_rate_outage", interferer_density_per_m2=1e-6, csi="instantaneous")
    h = np.array([3e-11, 1e-13])
    tolerated = p * h / 1.0 - b * N0                    # theta = 1: interference the upload survives
    expect = np.where(tolerated > 0, positive_stable_cdf(tolerated / inst.interference_scale_w, inst.delta), 0.0)
    np.testing.assert_allclose(inst.success_probability(d, b, p, h), expect, rtol=1e-12)
    assert link(link="adaptive_outage", target_outage=0.25).success_probability(d, b, p, h).tolist() == [0.75, 0.75]
    assert link(link="error_free").success_probability(d, b, np.array([0.2, 0.0]), h).tolist() == [1.0, 0.0]
    # without interferers an instantaneous-CSI fixed-rate upload succeeds iff its SNR reaches theta
    quiet = link(link="fixed_rate_outage", interferer_density_per_m2=0.0, csi="instantaneous")
    assert quiet.success_probability(d, b, p, h).tolist() == (p * h / (b * N0) >= 1.0).astype(float).tolist()


@pytest.mark.parametrize("mode", ["error_free", "fixed_rate_outage", "adaptive_outage"])
def test_delivered_iff_the_charged_rate_is_decodable(mode):
    lk = link(link=mode, interferer_density_per_m2=2e-6)
    rng = np.random.default_rng(3)
    K = 2000
    b, p = np.full(K, 1e6), np.full(K, 0.2)
    h = lk.mean_gain(rng.uniform(20, 500, K)) * rng.exponential(size=K)
    sel = rng.random(K) < 0.8
    rate = lk.uplink_rate_bps(b, p, h)
    real = lk.realise(np.random.default_rng(4), b, p, h, rate, sel)
    n0 = lk.noise_psd_w_per_hz
    np.testing.assert_allclose(real.capacity_bps, b * np.log2(1 + p * h / (real.interference_w + b * n0)), rtol=1e-9)
    decodable = rate <= real.capacity_bps * (1 + 1e-9)
    np.testing.assert_array_equal(real.delivered, sel & decodable)
    if mode == "error_free":
        assert real.delivered.tolist() == sel.tolist() and not real.interference_w.any()
    else:
        assert 0 < real.delivered[sel].mean() < 1 and (real.interference_w > 0).all()


def test_downlink_is_an_equal_share_among_the_scheduled():
    lk = link(downlink_bandwidth_hz=20e6, server_power_dbm=43.0)
    sel, h = np.array([True, False, True, True]), np.full(4, 1e-12)
    share = np.array([20e6 / 3, 0, 20e6 / 3, 20e6 / 3])
    np.testing.assert_allclose(lk.downlink_bandwidth_share_hz(sel), share)
    expect = np.where(sel, share * np.log2(1 + lk.server_power_w * h / (np.maximum(share, 1) * N0)), 0.0)
    np.testing.assert_allclose(lk.downlink_rate_bps(sel, h), expect, rtol=1e-12)
    np.testing.assert_allclose(lk.downlink_rate_if_bps(3, h)[sel], expect[sel], rtol=1e-12)


def test_the_old_outage_key_is_a_one_line_error_with_the_fix():
    from airtune.config import load_config
    from airtune.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(None, ["wireless.outage=none"])
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and "wireless.link=error_free" in msg and "fix:" in msg
