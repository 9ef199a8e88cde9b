"""Device-profile sampling."""

import dataclasses

import numpy as np
import pytest

from airtune.wireless.devices import DeviceProfiles, sample_device_profiles


def test_ranges_shapes_and_broadcast():
    prof = sample_device_profiles(np.random.default_rng(0), 3000, cycles_per_sample=2e7,
                                  cpu_freq_ghz_min=0.5, cpu_freq_ghz_max=2.0, kappa=1e-28)
    assert prof.num_devices == 3000
    assert np.all((prof.cpu_freq_hz >= 0.5e9) & (prof.cpu_freq_hz <= 2e9))
    assert prof.cpu_freq_hz.mean() == pytest.approx(1.25e9, rel=0.03)
    np.testing.assert_array_equal(prof.cycles_per_sample, np.full(3000, 2e7))
    np.testing.assert_array_equal(prof.max_power_w, np.full(3000, 0.2))
    assert prof.kappa == 1e-28
    assert set(np.unique(prof.memory_tier)) == {0, 1, 2}
    np.testing.assert_allclose(np.bincount(prof.memory_tier) / 3000, 1 / 3, atol=0.03)


def test_determinism_and_immutability():
    a = sample_device_profiles(np.random.default_rng(9), 10, cycles_per_sample=1e6)
    b = sample_device_profiles(np.random.default_rng(9), 10, cycles_per_sample=1e6)
    np.testing.assert_array_equal(a.cpu_freq_hz, b.cpu_freq_hz)
    np.testing.assert_array_equal(a.memory_tier, b.memory_tier)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.kappa = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        a.cpu_freq_hz[0] = 1.0


def test_per_device_arrays_and_validation():
    prof = sample_device_profiles(np.random.default_rng(0), 3, cycles_per_sample=[1e6, 2e6, 3e6],
                                  max_power_w=[0.1, 0.2, 0.3])
    np.testing.assert_array_equal(prof.cycles_per_sample, [1e6, 2e6, 3e6])
    np.testing.assert_array_equal(prof.max_power_w, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError):
        sample_device_profiles(np.random.default_rng(0), 3, cycles_per_sample=1e6,
                               cpu_freq_ghz_min=2.0, cpu_freq_ghz_max=1.0)
    with pytest.raises(ValueError, match="shape"):
        DeviceProfiles(np.ones(3), np.ones(3), np.ones(2), 1e-28, np.zeros(3, int))
