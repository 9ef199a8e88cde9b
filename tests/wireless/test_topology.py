"""Uniform-in-area placement."""

import numpy as np
import pytest

from airtune.wireless.topology import drop_uniform_disk


def test_bounds_shape_and_determinism():
    d1 = drop_uniform_disk(np.random.default_rng(7), 1000, 500.0, 35.0)
    d2 = drop_uniform_disk(np.random.default_rng(7), 1000, 500.0, 35.0)
    assert d1.shape == (1000,)
    assert np.all((d1 >= 35.0) & (d1 <= 500.0))
    np.testing.assert_array_equal(d1, d2)


def test_uniform_by_area():
    # P(d <= R/2) = 1/4 in a full disk; the annulus median is sqrt((m^2 + R^2) / 2).
    d = drop_uniform_disk(np.random.default_rng(0), 20_000, 500.0)
    assert np.mean(d <= 250.0) == pytest.approx(0.25, abs=0.015)
    d = drop_uniform_disk(np.random.default_rng(1), 20_000, 500.0, 100.0)
    assert np.mean(d <= np.sqrt((100.0**2 + 500.0**2) / 2)) == pytest.approx(0.5, abs=0.015)


@pytest.mark.parametrize("args", [(-1, 500.0, 0.0), (3, 0.0, 0.0), (3, 100.0, 200.0)])
def test_invalid_arguments(args):
    with pytest.raises(ValueError):
        drop_uniform_disk(np.random.default_rng(0), *args)
