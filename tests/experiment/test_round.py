"""``radio_round``: idle devices cost nothing, delivered is a subset of selected, and the
per-device costs add up to the round's totals (hand-checked against the cost formulas)."""

from __future__ import annotations

import numpy as np
import pytest

from airtune.allocation.result import Allocation
from airtune.config.schema import WirelessConfig
from airtune.experiment.round import radio_round
from airtune.wireless.channel import init_channel, step_channel
from airtune.wireless.devices import sample_device_profiles
from airtune.wireless.link import link_from_config

K = 8


@pytest.fixture(params=["error_free", "fixed_rate_outage", "adaptive_outage"])
def round_(request):
    lk = link_from_config(WirelessConfig(link=request.param, interferer_density_per_m2=2e-6))
    rng = np.random.default_rng(0)
    ch = step_channel(init_channel(rng, K, 500.0, 10.0), rng)
    dev = sample_device_profiles(rng, K, cycles_per_sample=1e8)
    sel = np.array([True, False, True, True, False, True, False, False])
    alloc = Allocation(sel, np.where(sel, 2.5e6, 0.0), np.where(sel, 0.2, 0.0), 0.0, True, 0, "")
    ul, dl, samples = np.where(sel, 3e6, 0.0), np.where(sel, 2e6, 0.0), np.where(sel, 40.0, 0.0)
    radio = radio_round(lk, ch, dev, alloc, ul, dl, samples, np.random.default_rng(1), 0.5,
                        server_flops_per_sample=2e9, server_flops_per_s=1e12)
    return lk, ch, dev, sel, ul, dl, samples, radio


def test_idle_devices_cost_nothing(round_):
    *_, sel, ul, dl, samples, radio = round_
    c = radio.cost
    for arr in (c.compute_s, c.server_s, c.uplink_s, c.downlink_s, c.latency_s, c.energy_j, radio.uplink_rate_bps,
                radio.downlink_rate_bps, radio.success_prob, radio.sinr, radio.capacity_bps):
        assert not np.any(arr[~sel]), arr
    assert not radio.delivered[~sel].any()


def test_delivered_is_a_subset_of_selected_and_decodable(round_):
    *_, sel, _, _, _, radio = round_
    assert set(np.flatnonzero(radio.delivered)) <= set(np.flatnonzero(sel))
    np.testing.assert_array_equal(radio.delivered[sel], radio.uplink_rate_bps[sel] <= radio.capacity_bps[sel] * (1 + 1e-9))


def test_costs_add_up_by_hand(round_):
    lk, ch, dev, sel, ul, dl, samples, radio = round_
    c = radio.cost
    cycles = dev.cycles_per_sample * 0.5
    np.testing.assert_allclose(c.compute_s[sel], (cycles * samples / dev.cpu_freq_hz)[sel], rtol=1e-12)
    np.testing.assert_allclose(c.server_s[sel], 2e9 * 40.0 * sel.sum() / 1e12, rtol=1e-12)
    np.testing.assert_allclose(c.uplink_s[sel], (ul / np.where(sel, radio.uplink_rate_bps, 1))[sel], rtol=1e-12)
    np.testing.assert_allclose(c.downlink_s[sel], (dl / np.where(sel, radio.downlink_rate_bps, 1))[sel], rtol=1e-12)
    np.testing.assert_allclose(c.latency_s, c.compute_s + c.server_s + c.uplink_s + c.downlink_s, rtol=1e-12)
    assert c.round_latency_s == pytest.approx(c.latency_s[sel].max(), rel=1e-12)
    np.testing.assert_allclose(c.energy_j, c.compute_energy_j + c.tx_energy_j, rtol=1e-12)
    np.testing.assert_allclose(c.tx_energy_j[sel], 0.2 * c.uplink_s[sel], rtol=1e-12)
    np.testing.assert_allclose(c.compute_energy_j[sel], (dev.kappa * cycles * samples * dev.cpu_freq_hz ** 2)[sel],
                               rtol=1e-12)
    assert c.total_energy_j == pytest.approx(float(c.energy_j.sum()), rel=1e-12)
    np.testing.assert_allclose(radio.downlink_bandwidth_hz[sel], lk.downlink_bandwidth_hz / sel.sum())
