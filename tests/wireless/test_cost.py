"""Hand-computed latency, energy and payload numbers."""

import numpy as np
import pytest

from airtune.wireless import cost


def test_payload_bits():
    assert cost.payload_bits([100, 50], 32) == 4800
    assert cost.payload_bits([100, 50], [32, 16]) == 4000
    assert cost.payload_bits(np.array([10]), 16) == 160
    assert cost.payload_bits([], 32) == 0
    assert cost.payload_bits_from_itemsizes([100, 50], [4, 2]) == 4000
    assert isinstance(cost.payload_bits([3_000_000_000], 32), int)
    assert cost.payload_bits([3_000_000_000], 32) == 96_000_000_000
    with pytest.raises(ValueError):
        cost.payload_bits([-1], 32)


def test_lora_payload_roberta_qv():
    # papers.md §3.3: RoBERTa-base q, v in 12 layers -> 36,864 r params; r = 8 -> 9.44 Mbit fp32.
    dims = [(768, 768)] * 24
    np.testing.assert_array_equal(cost.lora_payload_bits([4, 8], dims, 32), [4_718_592, 9_437_184])
    assert cost.lora_payload_bits(1, dims, 16) == 36_864 * 16


def test_compute_latency_and_energy_hand_values():
    # c = 2e7 cycles/sample, D = 50 samples: 1e9 cycles.
    np.testing.assert_allclose(cost.compute_latency_s(2e7, 50, [1e9, 2e9]), [1.0, 0.5])
    # kappa c D f^2 = 1e-28 * 1e9 * f^2 -> 0.1 J at 1 GHz, 0.4 J at 2 GHz.
    np.testing.assert_allclose(cost.compute_energy_j(1e-28, 2e7, 50, [1e9, 2e9]), [0.1, 0.4])


def test_comm_latency_and_tx_energy_edge_cases():
    with np.errstate(all="raise"):
        t = cost.comm_latency_s([1e6, 0.0, 1e6, 0.0], [2e6, 0.0, 0.0, 1e6])
        np.testing.assert_array_equal(t, [0.5, 0.0, np.inf, 0.0])
        e = cost.tx_energy_j([0.2, 0.2, 0.0, 0.2], [0.5, 0.0, np.inf, np.inf])
        np.testing.assert_array_equal(e, [0.1, 0.0, 0.0, np.inf])
    assert cost.comm_latency_s(1e6, np.inf) == 0.0


def test_round_costs_hand_example():
    rc = cost.round_costs(
        cycles_per_sample=2e7, num_samples=50, cpu_freq_hz=np.array([1e9, 2e9, 1e9]),
        kappa=1e-28, power_w=np.array([0.2, 0.1, 0.2]),
        uplink_bits=1e6, uplink_rate_bps=np.array([2e6, 1e6, 0.0]),
        downlink_bits=5e5, downlink_rate_bps=1e7,
        selected=np.array([True, True, False]),
    )
    np.testing.assert_allclose(rc.compute_s, [1.0, 0.5, 0.0])
    np.testing.assert_allclose(rc.uplink_s, [0.5, 1.0, 0.0])
    np.testing.assert_allclose(rc.downlink_s, [0.05, 0.05, 0.0])
    np.testing.assert_allclose(rc.latency_s, [1.55, 1.55, 0.0])
    np.testing.assert_allclose(rc.compute_energy_j, [0.1, 0.4, 0.0])
    np.testing.assert_allclose(rc.tx_energy_j, [0.1, 0.1, 0.0])
    np.testing.assert_allclose(rc.energy_j, [0.2, 0.5, 0.0])
    assert rc.round_latency_s == pytest.approx(1.55)
    assert rc.total_energy_j == pytest.approx(0.7)


def test_round_costs_none_selected_and_default_all():
    kw = dict(cycles_per_sample=1e6, num_samples=10, cpu_freq_hz=np.full(4, 1e9), kappa=1e-28,
              power_w=0.2, uplink_bits=1e5, uplink_rate_bps=1e6)
    rc = cost.round_costs(selected=np.zeros(4, bool), **kw)
    assert rc.round_latency_s == 0.0 and rc.total_energy_j == 0.0
    assert np.all(rc.latency_s == 0.0)
    rc_all = cost.round_costs(**kw)
    assert rc_all.selected.all()
    assert rc_all.round_latency_s == pytest.approx(0.01 + 0.1)
    assert rc_all.total_energy_j == pytest.approx(4 * (1e-28 * 1e7 * 1e18 + 0.2 * 0.1))


def test_round_latency_is_inf_when_scheduled_device_has_no_rate():
    rc = cost.round_costs(cycles_per_sample=1e6, num_samples=1, cpu_freq_hz=1e9, kappa=1e-28,
                          power_w=np.array([0.2, 0.2]), uplink_bits=1e5,
                          uplink_rate_bps=np.array([1e6, 0.0]))
    assert rc.round_latency_s == np.inf
