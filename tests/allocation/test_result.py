"""The Allocation result record."""

import dataclasses

import pytest

from airtune.allocation.result import Allocation


def make(**over):
    kw = dict(selected=[True, False, True], bandwidth_hz=[5e6, 0.0, 5e6], power_w=[0.2, 0.0, 0.1],
              objective=1.5, converged=False, iterations=7, message="max iterations reached")
    kw.update(over)
    return Allocation(**kw)


def test_fields_and_properties():
    a = make()
    assert a.selected.dtype == bool and a.num_devices == 3 and a.num_selected == 2
    assert a.converged is False and a.iterations == 7 and a.extra == {}
    assert a.constraint_violations(1e7, 0.2) == []
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.objective = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        a.power_w[0] = 0.0


def test_constraint_violations():
    assert any("bandwidth sum" in m for m in make().constraint_violations(9e6, 0.2))
    assert any("power" in m for m in make(power_w=[0.3, 0.0, 0.1]).constraint_violations(1e7, 0.2))
    leaky = make(bandwidth_hz=[5e6, 1.0, 5e6])
    assert any("unselected" in m for m in leaky.constraint_violations(1e7, 0.2))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        make(power_w=[0.2, 0.0])
