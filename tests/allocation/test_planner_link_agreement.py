"""Every planner and the runner agree on the downlink rate and the round latency for the same
plan: planners price a plan with the run's link (``planner.planned_latency_s``,
``planned_downlink_s``), the runner with ``experiment.round.radio_round``; with instantaneous CSI
the two see the same channel and must give the same numbers."""

from __future__ import annotations

import numpy as np
import pytest

from airtune.allocation.exchange import Hints, ModuleSetHint, SoftPayloadHint
from airtune.allocation.planner import PlannerContext, RoundInputs, make_planner, planned_downlink_s, planned_latency_s
from airtune.config.schema import WirelessConfig
from airtune.experiment.round import radio_round
from airtune.registry import ALLOCATORS
from airtune.wireless.channel import init_channel, step_channel
from airtune.wireless.cost import compute_energy_j, compute_latency_s
from airtune.wireless.devices import sample_device_profiles
from airtune.wireless.link import link_from_config

K, N, R = 12, 4, 4
DIMS = [(384, 384)] * 12
TABLE = np.array([8e4 + m * 6e5 for m in range(R + 1)])        # SOFT payload S(m) in bits, m kept
MODULE_BITS = np.array([1e6, 2e6, 4e6])


def world(mode: str, seed: int = 0):
    w = WirelessConfig(link=mode, csi="instantaneous", interferer_density_per_m2=1e-7, uplink_bandwidth_hz=5e6)
    lk = link_from_config(w)
    rng = np.random.default_rng(seed)
    ch = step_channel(init_channel(rng, K, 500.0, 10.0), rng)
    dev = sample_device_profiles(rng, K, cycles_per_sample=2e7)
    ctx = PlannerContext(num_devices=K, devices_per_round=N, rounds=10, cpu_freq_hz=dev.cpu_freq_hz,
                         max_power_w=dev.max_power_w, kappa=dev.kappa, data_sizes=np.arange(1.0, K + 1) * 20,
                         link=lk, lora_dims=DIMS, seed=seed, scheduler="random",
                         label_counts=np.stack([np.arange(K), K - np.arange(K)], axis=1) * 10.0)
    samples = np.full(K, 48.0)
    server_alone = np.full(K, 0.02)          # a split-learning-like server share, 0.02 s alone
    inputs = RoundInputs(
        round_idx=0, rng=np.random.default_rng(9), channel_gain=lk.planner_gain(ch), distance_m=ch.distance_m,
        uplink_bits=np.full(K, 3e6), downlink_bits=np.full(K, 2e6),
        compute_s=compute_latency_s(dev.cycles_per_sample, samples, dev.cpu_freq_hz),
        compute_energy_j=compute_energy_j(dev.kappa, dev.cycles_per_sample, samples, dev.cpu_freq_hz),
        hints=Hints(soft_payload=SoftPayloadHint(rank=R, payload_bits=TABLE),
                    modules=ModuleSetHint(ranks=(2, 4, 8), payload_bits=MODULE_BITS)),
        server_s_alone=server_alone)
    return lk, ch, dev, ctx, inputs, samples


def charged(lk, ch, dev, plan, inputs, samples, uplink_bits):
    """The runner's pricing of ``plan`` (server share: flops/sample s.t. alone = server_s_alone)."""
    sel = plan.selected
    flops = 1e12
    return radio_round(lk, ch, dev, plan, np.where(sel, uplink_bits, 0.0), np.where(sel, inputs.downlink_bits, 0.0),
                       np.where(sel, samples, 0.0), np.random.default_rng(1), 1.0,
                       server_flops_per_sample=flops * inputs.server_s_alone[0] / samples[0], server_flops_per_s=flops)


CASES = {
    "equal": ("error_free", {}),
    "class_balanced": ("error_free", {"beta": 2.0}),
    "lyapunov": ("error_free", {"deadline_s": 1.1, "max_devices": N}),
    "tsfa": ("error_free", {"latency_budget_s": 20.0, "stage1_samples": 8, "candidate_ranks": [R]}),
    "model_switching": ("adaptive_outage", {"deadline_s": 1.8}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_planner_and_runner_agree_on_downlink_and_latency(name):
    assert set(CASES) == set(ALLOCATORS.names()), "a new allocator needs an agreement case here"
    mode, options = CASES[name]
    lk, ch, dev, ctx, inputs, samples = world(mode)
    plan = make_planner(ALLOCATORS.get(name), options, ctx).plan(inputs)
    sel = plan.selected
    assert sel.any()
    if name == "tsfa":
        up = TABLE[plan.extra["kept_components"]]
    elif name == "model_switching":
        up = MODULE_BITS[np.maximum(plan.directives.modules.modules, 0)]
    else:
        up = inputs.uplink_bits
    radio = charged(lk, ch, dev, plan, inputs, samples, up)
    n = int(sel.sum())
    np.testing.assert_allclose(planned_downlink_s(lk, inputs, n)[sel], radio.cost.downlink_s[sel], rtol=1e-12)
    planned = RoundInputs(**{**inputs.__dict__, "uplink_bits": up})
    lat, round_lat = planned_latency_s(lk, planned, sel, plan.bandwidth_hz, plan.power_w)
    np.testing.assert_allclose(lat, radio.cost.latency_s, rtol=1e-12)
    assert round_lat == pytest.approx(radio.cost.round_latency_s, rel=1e-12)
    np.testing.assert_allclose(radio.cost.server_s[sel], n * inputs.server_s_alone[sel], rtol=1e-12)
    if name == "tsfa":          # the planner's own round latency is the runner's
        assert plan.extra["latency_s"] == pytest.approx(radio.cost.round_latency_s, rel=1e-6)
    if "deadline_s" in options:  # planned at the smallest shares: the charged plan meets the deadline
        assert radio.cost.latency_s[sel].max() <= options["deadline_s"] * (1 + 1e-9)
