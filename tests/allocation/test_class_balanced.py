"""Fed-CBS class-balanced sampling: the QCID by hand, the draw law against exact enumeration, a
real reduction of imbalance against random scheduling, the exploration bonus, and the planner."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from airtune.allocation.class_balanced import (
    ClassBalancedPlanner,
    class_shares,
    draw_weights,
    group_qcid,
    sample_class_balanced,
)
from airtune.allocation.planner import PlannerContext, RoundInputs, RoundOutcome, make_planner
from airtune.config.schema import WirelessConfig
from airtune.data.partition import dirichlet
from airtune.errors import ConfigError
from airtune.registry import ALLOCATORS
from airtune.wireless.link import link_from_config


def test_qcid_by_hand_uniform_and_data_size_weights():
    counts = np.array([[3, 1], [0, 2]])          # shares [.75, .25] and [0, 1]; sizes 4 and 2
    a = class_shares(counts)
    # uniform: mix = ([.75,.25] + [0,1]) / 2 = [.375, .625]; QCID = 2 * 0.125^2 = 1/32
    assert group_qcid(a, np.ones(2), [0, 1]) == pytest.approx(1 / 32)
    # data size: pooled histogram [3, 3] / 6 is balanced
    assert group_qcid(a, np.array([4.0, 2.0]), [0, 1]) == pytest.approx(0.0)
    # one device alone: (.75 - .5)^2 + (.25 - .5)^2 = 1/8; a mask selects the same group
    assert group_qcid(a, np.ones(2), np.array([True, False])) == pytest.approx(1 / 8)
    assert group_qcid(a, np.ones(2), np.zeros(2, bool)) == 0.0
    # draw weights with device 0 chosen: QCID({0,1}) = 1/32 -> (1/32 + 0.01)^-2
    w = draw_weights(a, np.ones(2), [0], beta=2.0, qcid_floor=0.01)
    assert w[0] == 0.0 and w[1] == pytest.approx((1 / 32 + 0.01) ** -2)


def exact_set_law(counts, n, beta, floor):
    """P(group) by enumerating every ordered draw sequence of the sequential rule."""
    a, w = class_shares(counts), np.ones(len(counts))
    law: dict[tuple[int, ...], float] = {}
    for seq in itertools.permutations(range(len(counts)), n):
        p, chosen = 1.0, []
        for k in seq:
            wt = draw_weights(a, w, chosen, beta=beta, qcid_floor=floor)
            p *= wt[k] / wt.sum()
            chosen.append(k)
        key = tuple(sorted(seq))
        law[key] = law.get(key, 0.0) + p
    return law


def test_sampler_follows_the_exact_sequential_law():
    counts = np.array([[10, 0], [8, 2], [5, 5], [1, 9], [0, 10]])
    law = exact_set_law(counts, 2, beta=1.0, floor=0.01)
    assert sum(law.values()) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    draws = 20000
    freq: dict[tuple[int, ...], int] = {}
    for _ in range(draws):
        key = tuple(np.flatnonzero(sample_class_balanced(rng, counts, 2, beta=1.0, qcid_floor=0.01)))
        freq[key] = freq.get(key, 0) + 1
    for key, p in law.items():          # 4 standard errors at most
        assert abs(freq.get(key, 0) / draws - p) <= 4 * np.sqrt(p * (1 - p) / draws) + 1e-3, key
    # the law favours balanced groups (the first draw favours the balanced device 2, not the
    # complementary pairs): mean QCID well under that of a uniformly random pair
    a = class_shares(counts)
    mean_law = sum(p * group_qcid(a, np.ones(5), list(g)) for g, p in law.items())
    mean_uniform = np.mean([group_qcid(a, np.ones(5), list(g)) for g in law])
    assert mean_law < 0.7 * mean_uniform    # 0.074 against 0.113


def test_balanced_groups_against_random_on_a_dirichlet_split():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 4000)
    parts = dirichlet(labels, 20, rng, alpha=0.5)
    counts = np.array([np.bincount(labels[p], minlength=2) for p in parts])
    a, w = class_shares(counts), np.ones(20)
    cbs = [group_qcid(a, w, sample_class_balanced(rng, counts, 5)) for _ in range(300)]
    rand = [group_qcid(a, w, rng.choice(20, 5, replace=False)) for _ in range(300)]
    assert np.mean(cbs) < 0.25 * np.mean(rand)


def test_exploration_favours_devices_never_scheduled():
    counts = np.array([[5, 5]] * 3 + [[10, 0]])   # device 3 is skewed and never chosen so far
    T = np.array([50.0, 50.0, 50.0, 0.0])
    rng = np.random.default_rng(2)
    off = np.mean([sample_class_balanced(rng, counts, 1, times_selected=T, round_idx=50)[3] for _ in range(2000)])
    on = np.mean([sample_class_balanced(rng, counts, 1, exploration=5.0, times_selected=T, round_idx=50)[3]
                  for _ in range(2000)])
    assert off < 0.01 and on > 0.5


def context(K: int = 8, n: int = 3, counts=None) -> PlannerContext:
    counts = np.array([[k, K - k] for k in range(K)], float) if counts is None else counts
    return PlannerContext(num_devices=K, devices_per_round=n, rounds=3, cpu_freq_hz=np.full(K, 1e9),
                          max_power_w=np.full(K, 0.2), kappa=1e-28, data_sizes=counts.sum(1),
                          link=link_from_config(WirelessConfig(uplink_bandwidth_hz=1e6)), lora_dims=[],
                          seed=0, scheduler="random", label_counts=counts)


def inputs(K: int = 8, rnd: int = 0) -> RoundInputs:
    z = np.zeros(K)
    return RoundInputs(round_idx=rnd, rng=np.random.default_rng(rnd), channel_gain=z + 1e-9, distance_m=z + 100,
                       uplink_bits=z + 1e6, downlink_bits=z + 1e6, compute_s=z, compute_energy_j=z)


def test_planner_plans_equal_split_logs_qcid_and_resumes():
    assert ALLOCATORS.get("class_balanced") is ClassBalancedPlanner
    p = make_planner(ALLOCATORS.get("class_balanced"), {"beta": 2.0, "exploration": 0.5}, context())
    plan = p.plan(inputs())
    sel = plan.selected
    assert sel.sum() == 3 and plan.bandwidth_hz[sel].tolist() == [1e6 / 3] * 3
    assert np.all(plan.bandwidth_hz[~sel] == 0) and np.all(plan.power_w[sel] == 0.2)
    assert plan.objective == pytest.approx(group_qcid(p.shares, p.weights, sel))
    z = np.zeros(8)
    delivered = sel & (np.arange(8) != np.flatnonzero(sel)[0])
    out = RoundOutcome(delivered=delivered, success_prob=z, energy_j=z, latency_s=z, uplink_bits=z,
                       round_latency_s=0.0)
    log = p.observe(inputs(), plan, out)
    assert log["qcid_delivered"] == pytest.approx(group_qcid(p.shares, p.weights, delivered))
    q = make_planner(ALLOCATORS.get("class_balanced"), {"beta": 2.0, "exploration": 0.5}, context())
    q.load_state_dict(p.state_dict())
    assert q.times_selected.tolist() == sel.astype(float).tolist()
    assert np.array_equal(q.plan(inputs(rnd=1)).selected, p.plan(inputs(rnd=1)).selected)


def test_planner_errors_name_the_field():
    with pytest.raises(ConfigError, match="allocation.options.beta"):
        make_planner(ALLOCATORS.get("class_balanced"), {"beta": 0}, context())
    with pytest.raises(ConfigError, match="weighting"):
        make_planner(ALLOCATORS.get("class_balanced"), {"weighting": "pooled"}, context())
    ctx = PlannerContext(**{**context().__dict__, "label_counts": None})
    with pytest.raises(ValueError, match="label counts"):
        make_planner(ALLOCATORS.get("class_balanced"), {}, ctx)
