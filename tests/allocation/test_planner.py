"""The planner contract: function allocators wrapped, options validated with the field named."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict

from airtune.allocation.baselines import allocate_equal
from airtune.allocation.planner import FunctionPlanner, Planner, PlannerContext, RoundInputs, make_planner
from airtune.config import Config
from airtune.config.schema import WirelessConfig
from airtune.errors import ConfigError
from airtune.experiment.validate import allocator_option_errors
from airtune.wireless.link import link_from_config


def context(K: int = 6, n: int = 2) -> PlannerContext:
    return PlannerContext(num_devices=K, devices_per_round=n, rounds=3, cpu_freq_hz=np.full(K, 1e9),
                          max_power_w=np.full(K, 0.2), kappa=1e-28, data_sizes=np.full(K, 100.0),
                          link=link_from_config(WirelessConfig(uplink_bandwidth_hz=1e6)), lora_dims=[],
                          seed=0, scheduler="best_channel")


def inputs(K: int = 6) -> RoundInputs:
    z = np.zeros(K)
    return RoundInputs(round_idx=0, rng=np.random.default_rng(0), channel_gain=np.arange(1.0, K + 1),
                       distance_m=z + 100, uplink_bits=z + 1e6, downlink_bits=z + 1e6, compute_s=z,
                       compute_energy_j=z)


def test_function_allocator_is_wrapped_and_called_with_the_context():
    p = make_planner(allocate_equal, {}, context())
    assert isinstance(p, FunctionPlanner)
    plan = p.plan(inputs())
    assert plan.selected.tolist() == [False] * 4 + [True] * 2   # best_channel: the two largest gains
    assert plan.bandwidth_hz[plan.selected].tolist() == [5e5, 5e5]
    assert p.state_dict() == {}


def test_function_allocator_refuses_options():
    with pytest.raises(ConfigError, match="allocation.options"):
        make_planner(allocate_equal, {"V": 1.0}, context())


class _Opts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    V: float = 1.0


class _Counting(Planner):
    Options = _Opts

    def __init__(self, options, context):
        super().__init__(options, context)
        self.calls = 0

    def plan(self, inputs):
        self.calls += 1
        return allocate_equal(rng=inputs.rng, round_idx=0, channel_gain=inputs.channel_gain,
                              max_power_w=0.1, total_bandwidth_hz=1.0, n=1, scheduler="random")

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]


def test_planner_options_are_validated_with_the_field_named():
    assert make_planner(_Counting, {"V": 3}, context()).options.V == 3.0
    with pytest.raises(ConfigError, match=r"allocation.options.W: unknown option"):
        make_planner(_Counting, {"W": 3}, context())
    with pytest.raises(ConfigError, match=r"allocation.options.V = 'x'"):
        make_planner(_Counting, {"V": "x"}, context())


def test_planner_state_round_trips():
    p = make_planner(_Counting, {}, context())
    p.plan(inputs())
    q = make_planner(_Counting, {}, context())
    q.load_state_dict(p.state_dict())
    assert q.calls == 1


def test_config_check_reports_options_of_a_stateless_allocator():
    cfg = Config(allocation={"name": "equal", "options": {"V": 1}})
    (line,) = allocator_option_errors(cfg)
    assert line.startswith("allocation.options = {'V': 1}") and "fix:" in line
