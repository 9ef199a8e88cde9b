"""Baseline schedulers and the equal allocator: hand cases and invariants."""

import numpy as np
import pytest

from airtune.allocation import baselines as bl
from airtune.allocation.result import Allocation
from airtune.registry import ALLOCATORS, SCHEDULERS

K = 10


def test_registered_names():
    assert {"random", "round_robin", "best_channel"} <= set(SCHEDULERS.names())
    assert "equal" in ALLOCATORS
    assert ALLOCATORS.get("equal") is bl.allocate_equal


def test_round_robin_hand_values_and_coverage():
    np.testing.assert_array_equal(np.flatnonzero(bl.schedule_round_robin(0, K, 3)), [0, 1, 2])
    np.testing.assert_array_equal(np.flatnonzero(bl.schedule_round_robin(3, K, 3)), [0, 1, 9])
    counts = sum(bl.schedule_round_robin(t, K, 5).astype(int) for t in range(K // 5))
    np.testing.assert_array_equal(counts, np.ones(K))  # every device exactly once in K/n rounds
    covered = np.any([bl.schedule_round_robin(t, K, 3) for t in range(-(-K // 3))], axis=0)
    assert covered.all()


def test_best_channel_ties_by_index():
    g = np.array([1.0, 3.0, 2.0, 3.0, 0.5])
    np.testing.assert_array_equal(np.flatnonzero(bl.schedule_best_channel(g, 2)), [1, 3])
    np.testing.assert_array_equal(np.flatnonzero(bl.schedule_best_channel(g, 3)), [1, 2, 3])
    np.testing.assert_array_equal(np.flatnonzero(bl.schedule_best_channel(np.ones(5), 2)), [0, 1])


def test_random_determinism_and_spread():
    a = bl.schedule_random(np.random.default_rng(1), K, 4)
    b = bl.schedule_random(np.random.default_rng(1), K, 4)
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(0)
    freq = np.mean([bl.schedule_random(rng, K, 4) for _ in range(2000)], axis=0)
    np.testing.assert_allclose(freq, 0.4, atol=0.05)


@pytest.mark.parametrize("name", ["random", "round_robin", "best_channel"])
@pytest.mark.parametrize("n", [0, 1, 4, K])
def test_common_signature_selects_exactly_n(name, n):
    gain = np.random.default_rng(0).exponential(size=K)
    mask = SCHEDULERS.get(name)(rng=np.random.default_rng(0), round_idx=5, channel_gain=gain, n=n)
    assert mask.dtype == bool and mask.shape == (K,) and mask.sum() == n


@pytest.mark.parametrize("n", [-1, K + 1])
def test_invalid_n_raises(n):
    with pytest.raises(ValueError, match="n="):
        bl.schedule_round_robin(0, K, n)


def test_equal_bandwidth_and_max_power():
    sel = np.array([True, False, True, True])
    np.testing.assert_allclose(bl.equal_bandwidth(sel, 9e6), [3e6, 0, 3e6, 3e6])
    np.testing.assert_array_equal(bl.equal_bandwidth(np.zeros(4, bool), 9e6), np.zeros(4))
    np.testing.assert_allclose(bl.max_power(sel, 0.2), [0.2, 0, 0.2, 0.2])
    np.testing.assert_allclose(bl.max_power(sel, [0.1, 0.2, 0.3, 0.4]), [0.1, 0, 0.3, 0.4])


@pytest.mark.parametrize("scheduler", ["random", "round_robin", "best_channel"])
def test_allocate_equal_invariants(scheduler):
    rng = np.random.default_rng(3)
    gain = rng.exponential(size=K) * 1e-10
    p_max = rng.uniform(0.1, 0.2, size=K)
    for t in range(5):
        alloc = ALLOCATORS.get("equal")(
            rng=rng, round_idx=t, channel_gain=gain, max_power_w=p_max,
            total_bandwidth_hz=1e7, n=4, scheduler=scheduler,
        )
        assert isinstance(alloc, Allocation)
        assert alloc.num_selected == 4 and alloc.converged and alloc.iterations == 0
        assert alloc.bandwidth_hz.sum() <= 1e7 * (1 + 1e-12)
        assert np.all((alloc.power_w >= 0) & (alloc.power_w <= p_max))
        assert alloc.constraint_violations(1e7, p_max) == []
        assert alloc.extra["scheduler"] == scheduler


def test_allocate_equal_determinism_and_extra_context():
    kw = dict(round_idx=0, channel_gain=np.ones(K), max_power_w=0.2, total_bandwidth_hz=1e7, n=3,
              scheduler="random", queues_j=np.zeros(K))
    a = bl.allocate_equal(rng=np.random.default_rng(8), **kw)
    b = bl.allocate_equal(rng=np.random.default_rng(8), **kw)
    np.testing.assert_array_equal(a.selected, b.selected)
    np.testing.assert_array_equal(a.bandwidth_hz, b.bandwidth_hz)


def test_unknown_scheduler_names_choices():
    from airtune.errors import RegistryError

    with pytest.raises(RegistryError, match="round_robin"):
        bl.allocate_equal(rng=np.random.default_rng(0), round_idx=0, channel_gain=np.ones(K),
                          max_power_w=0.2, total_bandwidth_hz=1e7, n=3, scheduler="nope")
