"""Lower bounds on the water-filled energy (allocation/split_fed/energy_bound.py) and the
candidate pruning they drive in ``schedule_lyapunov``: pruning never changes the decision."""

from __future__ import annotations

import numpy as np
import pytest

from airtune.allocation.split_fed import lyapunov as ly
from airtune.allocation.split_fed.energy_bound import box_energy_bound_j, dual_energy_bound_j, upper_bandwidth_hz
from airtune.allocation.split_fed.scheduling import schedule_lyapunov
from airtune.allocation.split_fed.waterfill import upload_energy_j, waterfill

N0 = 10 ** (-174 / 10) * 1e-3


def test_upper_bandwidth_by_hand():
    # B = 10, minima 1, 2, 3: each may take what the others leave at their minima
    assert upper_bandwidth_hz(np.array([1.0, 2.0, 3.0]), 10.0).tolist() == [5.0, 6.0, 7.0]


def _set(rng, n):
    q = rng.uniform(0.0, 3.0, n) * (rng.random(n) < 0.8)
    s, p = rng.uniform(1e6, 2e7, n), rng.uniform(0.05, 0.3, n)
    h = 10 ** rng.uniform(-12.5, -10.5, n)
    lo = rng.uniform(1e4, 2e5, n)
    return q, s, p, h, lo, float(lo.sum() * rng.uniform(1.05, 4.0))


@pytest.mark.parametrize("seed", range(20))
def test_both_bounds_lie_below_the_water_filling_and_the_dual_is_tight_at_its_price(seed):
    rng = np.random.default_rng(seed)
    q, s, p, h, lo, total = _set(rng, int(rng.integers(1, 12)))
    wf = waterfill(q, s, p, h, N0, lo, total)
    exact = float(np.sum(q * upload_energy_j(wf.bandwidth_hz, s, p, h, N0)))
    assert box_energy_bound_j(q, s, p, h, np.full(q.size, N0), lo, total) <= exact * (1 + 1e-12)
    for factor in (0.1, 0.5, 2.0, 10.0):   # any price gives a bound (weak duality)
        assert dual_energy_bound_j(wf.nu * factor, q, s, p, h, N0, lo, total) <= exact * (1 + 1e-9)
    if np.any(q > 0) and np.isfinite(wf.nu):    # at the water-filling's own price the bound is its value
        assert dual_energy_bound_j(wf.nu, q, s, p, h, N0, lo, total) == pytest.approx(exact, rel=1e-7)


def _instance(rng, k):
    shared = rng.random() < 0.5
    return dict(queues_j=rng.exponential(1.0, k) * (rng.random(k) < 0.8) * 10 ** rng.uniform(-3, 2),
                V=10 ** rng.uniform(-2, 2), weight=rng.uniform(0.1, 1.0), g=ly.g_without_replacement,
                compute_s=rng.uniform(0.1, 1.0, k),
                downlink_s=np.arange(1, k + 1)[:, None] * rng.uniform(0.005, 0.03, k) if shared
                else rng.uniform(0.0, 0.2, k),
                uplink_bits=rng.uniform(1e5, 3e6, k), power_w=rng.uniform(0.05, 0.2, k),
                channel_gain=10 ** rng.uniform(-12, -9, k), noise_psd_w_per_hz=N0,
                total_bandwidth_hz=10 ** rng.uniform(5.5, 7.5), deadline_s=rng.uniform(1.0, 4.0),
                compute_energy_j=rng.uniform(0.0, 0.5, k))


def test_pruning_returns_the_same_decision_on_random_instances():
    """60 random rounds (K 3..40, with and without an N-dependent downlink): the same set,
    bandwidths and objective bit for bit, and the bounds do skip most candidates."""
    rng = np.random.default_rng(7)
    skipped = evaluated = 0
    for _ in range(60):
        inst = _instance(rng, int(rng.integers(3, 40)))
        full, fast = schedule_lyapunov(**inst, prune=False), schedule_lyapunov(**inst)
        assert np.array_equal(full.selected, fast.selected)
        assert np.array_equal(full.bandwidth_hz, fast.bandwidth_hz) and full.objective == fast.objective
        assert np.array_equal(full.extra["per_device_energy_j"], fast.extra["per_device_energy_j"])
        assert full.extra["pruned"] == 0 and fast.extra["candidates"] == full.extra["candidates"]
        skipped += fast.extra["pruned"]
        evaluated += fast.extra["candidates"]
    assert skipped > 0.5 * evaluated


def test_pruning_keeps_the_tie_rule():
    """All queues zero: every candidate's energy term is 0, so J = V w g(N) and the largest N
    wins; identical devices tie within a size, and the list's first such set is kept."""
    k = 8
    same = np.ones(k)
    inst = dict(queues_j=np.zeros(k), V=1.0, weight=1.0, g=ly.g_without_replacement, compute_s=0.1 * same,
                downlink_s=0.0, uplink_bits=1e5 * same, power_w=0.2 * same, channel_gain=2e-12 * same,
                noise_psd_w_per_hz=N0, total_bandwidth_hz=1e6, deadline_s=1.0, compute_energy_j=0.0)
    full, fast = schedule_lyapunov(**inst, prune=False), schedule_lyapunov(**inst)
    assert np.array_equal(full.selected, fast.selected) and full.objective == fast.objective


def test_a_given_minimum_bandwidth_table_gives_the_same_decision():
    """The calibrated budget solves each round twice; the second solve reuses the first's
    table (it does not depend on the queues): same decision, and a wrong shape is refused."""
    rng = np.random.default_rng(3)
    inst = _instance(rng, 12)
    first = schedule_lyapunov(**inst)
    free = {**inst, "queues_j": np.zeros(12)}
    again = schedule_lyapunov(**free, b_min_hz_by_n=first.extra["b_min_hz_by_n"])
    fresh = schedule_lyapunov(**free)
    assert np.array_equal(again.bandwidth_hz, fresh.bandwidth_hz) and again.objective == fresh.objective
    with pytest.raises(ValueError, match="b_min_hz_by_n must have shape"):
        schedule_lyapunov(**inst, b_min_hz_by_n=np.ones((2, 12)))
