"""TSFA stage 1 (allocation/tsfa/rank.py): the bound by hand, brute-force agreement, non-degeneracy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from airtune.allocation.min_bandwidth import min_bandwidth_from_snr_hz
from airtune.allocation.tsfa.rank import choose_rank, kept_at_budget, power_law_spectrum, stage1_bound
from airtune.lora.soft_payload import soft_payload_table

N0 = 10 ** (-20.4)
B = 1e6
P = 0.2
DIMS = [(384, 384)] * 12


def test_stage1_bound_by_hand():
    sig = [0.5, 0.25, 0.15, 0.1]
    # r = 2: (i) = 0.15 + 0.1; (ii): component 2 reaches the server with weight P_2 = 0.5 -> 0.25 (1 - 0.5)^2
    assert stage1_bound(sig, 2, [[1, 2]], [[0.5, 0.5]]) == pytest.approx((0.25, 0.0625))
    # r = 4, two samples: P = (1, .5, 0, 0) -> .25 * .25 + .15 + .1; P = (1, 1, 1, .2) -> .1 * .64
    ti, tii = stage1_bound(sig, 4, [[1, 2], [3, 4]], [[0.5, 0.5], [0.8, 0.2]])
    assert ti == 0.0 and tii == pytest.approx(0.5 * (0.0625 + 0.25 + 0.064))
    # r beyond the spectrum: zero padded
    assert stage1_bound(sig, 6, [[6]], [[1.0]]) == (0.0, 0.0)
    s = power_law_spectrum(4, 1.0)
    np.testing.assert_allclose(s, np.array([1, 1 / 2, 1 / 3, 1 / 4]) / (25 / 12))


def brute_kept(S, fixed, a, p, tail, T_bar):
    """Exact min of sum_k p_k^2 tail(m_k) s.t. sum_k b_min_k(S(m_k) / (T_bar - tau_k)) <= B."""
    n, r = S.shape[0], S.shape[1]
    best, arg = math.inf, np.ones(n, np.int64)
    for ms in itertools.product(range(1, r + 1), repeat=n):
        m = np.array(ms)
        need = min_bandwidth_from_snr_hz(S[np.arange(n), m - 1] / (T_bar - fixed), a).sum()
        val = float((p**2 * tail[m - 1]).sum())
        if need <= B and val < best:
            best, arg = val, m
    return best, arg


def coherent_bound(sig, r, kept, p):
    """(i) + (ii) by loops: sum_{i>r} s_i + mean_h sum_{i<=r} s_i (1 - sum_{k: m_k >= i} p_k)^2."""
    ti = sum(sig[r:])
    tii = np.mean([sum(sig[i - 1] * (1 - sum(pk for pk, mk in zip(ph, mh) if mk >= i)) ** 2
                       for i in range(1, r + 1)) for mh, ph in zip(kept, p)])
    return ti + tii


def test_stage1_matches_brute_force_on_tiny_instances():
    """The kept components at the budget are within one hull segment of the brute-force optimum
    (and equal to it on most instances), and the chosen rank minimises the bound recomputed by
    loops from them among the feasible ranks."""
    rng = np.random.default_rng(3)
    dims = [(8, 8)]
    exact = total = interior = 0
    for _ in range(30):
        n, N, ranks = 3, 3, [1, 2, 3, 4]
        g = rng.exponential(1.0, (N, n)) * 10 ** rng.uniform(-13.5, -12.5)
        one_s = soft_payload_table(1, dims, 32, "none")[1] / (B / n * 10)
        fixed_r = rng.uniform(0.0, 0.02, n)[None] + rng.uniform(0, 1.5) * one_s * np.arange(1, 5)[:, None]
        sig = power_law_spectrum(8, rng.uniform(0.3, 2.0))
        p = rng.dirichlet(np.ones(n), N)
        T_bar = float(fixed_r.max() + one_s * rng.uniform(1, 4))
        res = choose_rank(ranks, g, P, N0, B, fixed_r, dims, T_bar, weights=p, ideal_spectrum=sig, index_coding="none")
        ref = []
        for r in ranks:
            S = soft_payload_table(r, dims, 32, "none")[1:].astype(float)
            tail = np.cumsum(np.concatenate([sig, [0.0]])[::-1])[::-1][1:r + 1]
            a = P * g / N0
            kept = kept_at_budget(S, tail, p, fixed_r[r - 1], a, B, T_bar)
            for h in range(N):
                total += 1
                if min_bandwidth_from_snr_hz(S[0] / (T_bar - fixed_r[r - 1]), a[h]).sum() > B:
                    assert np.all(kept[h] == 1)
                    exact += 1
                    continue
                best, arg = brute_kept(np.broadcast_to(S, (n, r)), fixed_r[r - 1], a[h], p[h], tail, T_bar)
                got = float((p[h] ** 2 * tail[kept[h] - 1]).sum())
                assert best - 1e-12 <= got <= best + np.max(p[h] ** 2) * (sig[1] if r > 1 else 0) + 1e-12
                exact += bool(np.array_equal(kept[h], arg))
            ref.append(coherent_bound(sig, r, kept, p))
        np.testing.assert_allclose(res.bound, ref, rtol=1e-10, atol=1e-14)
        if res.feasible.any():
            assert res.rank == ranks[int(np.argmin(np.where(res.feasible, ref, np.inf)))]
            interior += res.rank < max(ranks)
    assert exact >= 0.8 * total and interior >= 3


def test_stage1_is_not_the_largest_rank_that_fits():
    """Heterogeneous channels: devices with good channels use more components than fit on
    average, so stage 1 picks a rank above the largest whose full upload fits; a steeper
    spectrum (less in the high components) or a costlier downlink pulls it back down."""
    rng = np.random.default_rng(0)
    N, n = 64, 5
    dist_gain = 10 ** rng.uniform(-13, -10.5, (N, n))
    g = dist_gain * rng.exponential(1.0, (N, n))
    ranks = [2, 4, 8, 16, 32]
    per_rank_down = 0.01  # s of downlink per rank unit
    fixed = np.array([[0.5 + per_rank_down * r] * n for r in ranks])
    S1 = soft_payload_table(1, DIMS)[1]
    budget = 0.5 + 4 * S1 / (B / n * 8)
    res = choose_rank(ranks, g, P, N0, B, fixed, DIMS, budget, spectrum_decay=0.5)
    full_fits = [r for r, t in zip(ranks, res.expected_latency_s) if t <= budget]
    largest_fit = max(full_fits) if full_fits else 0
    assert res.rank > largest_fit
    assert np.all(np.diff(res.rank_term) < 0)                      # (i) falls with r
    assert res.sparsification_term[-1] > res.sparsification_term[0]  # (ii) grows with r
    steep = choose_rank(ranks, g, P, N0, B, fixed, DIMS, budget, spectrum_decay=3.0)
    assert steep.rank < res.rank
    costly = np.array([[0.5 + 0.2 * r] * n for r in ranks])
    assert choose_rank(ranks, g, P, N0, B, costly, DIMS, budget + 0.8, spectrum_decay=0.5).rank < res.rank


def test_choose_rank_reports_an_impossible_budget_and_validates():
    res = choose_rank([2, 4], np.full(4, 1e-11), P, N0, B, 0.05, DIMS, 0.1)
    assert not res.any_feasible and res.rank == 2 and "no candidate rank" in res.message
    assert len(res.table()) == 2 and res.table()[1]["candidate_ranks"] == 4
    with pytest.raises(ValueError, match="distinct"):
        choose_rank([2, 2], np.full(4, 1e-11), P, N0, B, 0.05, DIMS, 1.0)
    with pytest.raises(ValueError, match="fixed_latency_s"):
        choose_rank([2, 4], np.full(4, 1e-11), P, N0, B, np.ones((3, 4)), DIMS, 1.0)
