"""Hand-computed unit conversions."""

import numpy as np
import pytest

from airtune.wireless import units


def test_db_round_trip_and_known_values():
    assert units.db_to_linear(0.0) == pytest.approx(1.0)
    assert units.db_to_linear(10.0) == pytest.approx(10.0)
    assert units.db_to_linear(3.0) == pytest.approx(1.99526, rel=1e-5)
    assert units.linear_to_db(100.0) == pytest.approx(20.0)
    x = np.array([-30.0, 0.0, 17.5])
    np.testing.assert_allclose(units.linear_to_db(units.db_to_linear(x)), x)


def test_dbm_and_psd():
    assert units.dbm_to_w(30.0) == pytest.approx(1.0)
    assert units.dbm_to_w(0.0) == pytest.approx(1e-3)
    assert units.dbm_to_w(23.0) == pytest.approx(0.19953, rel=1e-4)
    assert units.w_to_dbm(0.2) == pytest.approx(23.0103, rel=1e-5)
    assert units.dbm_per_hz_to_w_per_hz(-174.0) == pytest.approx(3.98107e-21, rel=1e-5)
    assert units.w_per_hz_to_dbm_per_hz(3.98107e-21) == pytest.approx(-174.0, abs=1e-4)


def test_frequency_and_distance():
    assert units.ghz_to_hz(1.5) == pytest.approx(1.5e9)
    assert units.hz_to_ghz(2e9) == pytest.approx(2.0)
    assert units.mhz_to_hz(10.0) == pytest.approx(1e7)
    assert units.hz_to_mhz(2e7) == pytest.approx(20.0)
    assert units.km_to_m(0.5) == pytest.approx(500.0)
    np.testing.assert_allclose(units.ghz_to_hz([0.5, 2.0]), [5e8, 2e9])


def test_zero_power_is_minus_inf_without_warning():
    with np.errstate(all="raise"):
        assert units.w_to_dbm(0.0) == -np.inf
