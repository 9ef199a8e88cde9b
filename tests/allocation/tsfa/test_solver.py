"""TSFA (papers.md §2.6 [R]): invariants, brute force, Lyapunov behaviour, offline rank choice."""

import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import lambertw

import airtune
from airtune.allocation.min_bandwidth import min_bandwidth_from_snr_hz as _min_bandwidth_hz
from airtune.allocation.tsfa.deadline import min_max_latency
from airtune.allocation.tsfa.solver import solve_tsfa_round, step_latency_queue
from airtune.lora.soft_payload import soft_payload_table
from airtune.wireless.channel import shannon_rate_bps

N0 = 10 ** (-20.4)  # -174 dBm/Hz in W/Hz
B = 1e6
P = 0.2


# --------------------------------------------------------------------------- references
def ref_min_bandwidth(rate, a):
    """Newton on log1p(x) = c x (x = a / b) from the upper bound 2 ln(1/c) / c; no Lambert W."""
    c = rate * math.log(2) / a
    ok = c < 1
    c = np.where(ok, c, 0.5)
    x = 2 * np.log(1 / c) / c
    for _ in range(60):  # concave h: monotone convergence from the right
        x = x - (np.log1p(x) - c * x) / (1 / (1 + x) - c)
    return np.where(ok, a / x, np.inf)


def ref_min_max_latency(S, comp, a, bandwidth):
    """Plain bisection on T of sum_k b_k(T) = B, (..., K) payloads."""
    lo = (comp + S * math.log(2) / a).max(-1)
    share = bandwidth / S.shape[-1]
    hi = (comp + S / (share * np.log2(1 + a / share))).max(-1)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        fits = ref_min_bandwidth(S / (mid[..., None] - comp), a).sum(-1) <= bandwidth
        hi, lo = np.where(fits, mid, hi), np.where(fits, lo, mid)
    return hi


def soft_error_curves(rng, shape):
    """eps(m) = sum of the squared scores beyond the top m (truncation_error_curve), (..., r+1)."""
    sq = np.sort(rng.exponential(1.0, shape), axis=-1)[..., ::-1] ** 2
    tail = np.flip(np.cumsum(np.flip(sq, -1), -1), -1)
    return np.concatenate([tail, np.zeros(shape[:-1] + (1,))], -1)


def make_instance(rng, K, r, convex=True, hetero=False):
    if convex:
        eps = soft_error_curves(rng, (K, r))
    else:  # any decreasing table, not convex in m
        eps = np.concatenate([np.sort(rng.uniform(0, 5, (K, r)), 1)[:, ::-1], np.zeros((K, 1))], 1)
    per_comp = rng.uniform(1e5, 4e5, (K, 1)) if hetero else np.full((K, 1), 2e5)
    return dict(
        error_curve=eps,
        payload_bits=np.arange(r + 1)[None] * per_comp + 16,
        compute_latency_s=rng.uniform(0.0, 0.3, K),
        weights=rng.dirichlet(np.ones(K)),
        channel_gain=rng.exponential(1.0, K) * 10 ** rng.uniform(-13, -11),
        power_w=P,
        noise_psd_w_per_hz=N0,
        total_bandwidth_hz=B,
    )


def brute_force(inst, Z, V):
    """min over all m in {1..r}^K of V sum p^2 eps + Z T*(m), T*(m) by bisection."""
    eps, S = inst["error_curve"], inst["payload_bits"]
    K, r = eps.shape[0], eps.shape[1] - 1
    a = P * inst["channel_gain"] / N0
    ms = np.array(list(itertools.product(range(1, r + 1), repeat=K)))  # (r^K, K)
    k = np.arange(K)
    T = ref_min_max_latency(S[k, ms], inst["compute_latency_s"], a, B)
    obj = V * (inst["weights"] ** 2 * eps[k, ms]).sum(-1) + Z * T
    return float(obj.min())


# --------------------------------------------------------------------------- building blocks
def test_lambert_w_min_bandwidth_meets_the_rate_exactly():
    rng = np.random.default_rng(0)
    a = 10 ** rng.uniform(5, 10, 200)  # p h / N0 in Hz
    c = np.concatenate([10 ** rng.uniform(-10, -1e-3, 195), 1 - 10 ** -np.arange(3.0, 8.0)])
    rate = c * a / math.log(2)  # c = R ln 2 / a < 1: reachable with finite bandwidth
    b = _min_bandwidth_hz(rate, a)
    np.testing.assert_allclose(b, ref_min_bandwidth(rate, a), rtol=1e-9)
    y = -lambertw(-c * np.exp(-c), -1).real / c  # the Lambert-W formula of papers.md §1.6
    mid = c < 0.99  # scipy's W_{-1} loses digits at its branch point
    np.testing.assert_allclose(b[mid], a[mid] / (y[mid] - 1), rtol=1e-9)
    ok = c < 1 - 1e-4  # near capacity the rate is flat in b: compare rates elsewhere
    np.testing.assert_allclose(shannon_rate_bps(b[ok], 1.0, a[ok], 1.0), rate[ok], rtol=1e-10)
    # at the branch point of W_{-1} (c -> 1) the answer stays finite and increasing
    near = _min_bandwidth_hz(1e6 * (1 - 10 ** -np.arange(9.0, 15.0)) / math.log(2), 1e6)
    assert np.all(np.isfinite(near)) and np.all(np.diff(near) > 0)
    assert _min_bandwidth_hz(0.0, 1e6) == 0.0
    assert _min_bandwidth_hz(1e6 / math.log(2), 1e6) == np.inf  # c = 1: only at b = inf
    assert _min_bandwidth_hz(1.0, 0.0) == np.inf


def test_min_max_latency_uses_the_band_and_equalises_finish_times():
    rng = np.random.default_rng(1)
    K = 6
    a = P * rng.exponential(1.0, K) * 1e-12 / N0
    comp = rng.uniform(0, 0.2, K)
    S = rng.uniform(1e5, 1e6, (10, K))
    T, b = min_max_latency(S, comp, a, B)
    assert np.all(b.sum(-1) <= B) and np.all(b.sum(-1) >= B * (1 - 1e-9))
    finish = comp + S / shannon_rate_bps(b, 1.0, a, 1.0)  # (10, K)
    np.testing.assert_allclose(finish, np.broadcast_to(T[:, None], finish.shape), rtol=1e-9)
    np.testing.assert_allclose(T, ref_min_max_latency(S, comp, a, B), rtol=1e-9)
    T2, _ = min_max_latency(S, comp, a, B, lower_s=T * 0.9, upper_s=T * 1.1)
    np.testing.assert_allclose(T2, T, rtol=1e-10)
    T3, _ = min_max_latency(S, comp, a, B, upper_s=T * 0.5)  # infeasible hint: ignored
    np.testing.assert_allclose(T3, T, rtol=1e-10)
    T0, b0 = min_max_latency(S[:1], comp, np.where(np.arange(K) == 2, 0.0, a), B)
    assert T0[0] == np.inf and np.allclose(b0, B / K)


def test_step_latency_queue_hand_values():
    assert step_latency_queue(0.0, 0.3, 0.5) == 0.0
    assert step_latency_queue(1.0, 0.7, 0.5) == pytest.approx(1.2)
    assert step_latency_queue(0.1, 0.2, 0.5) == 0.0


# --------------------------------------------------------------------------- online stage
@pytest.mark.parametrize("K,r,seed", [(1, 4, 0), (5, 1, 1), (5, 4, 2), (40, 8, 3)])
def test_round_invariants(K, r, seed):
    rng = np.random.default_rng(seed)
    inst = make_instance(rng, K, r, hetero=True)
    res = solve_tsfa_round(**inst, latency_queue_s=rng.uniform(0, 5), v=10 ** rng.uniform(0, 3))
    assert res.feasible and res.m.shape == (K,) and res.rank == r
    assert np.all((1 <= res.m) & (res.m <= r))
    assert res.bandwidth_hz.sum() <= B * (1 + 1e-9) and np.all(res.bandwidth_hz >= 0)
    assert np.all(res.device_latency_s <= res.deadline_s * (1 + 1e-9))
    assert res.latency_s == pytest.approx(res.device_latency_s.max())
    k = np.arange(K)
    err = float((inst["weights"] ** 2 * inst["error_curve"][k, res.m]).sum())
    assert res.error_term == pytest.approx(err, rel=1e-12)
    alloc = res.to_allocation(P)
    assert alloc.constraint_violations(B, P) == []
    assert alloc.extra["kept_components"].tolist() == res.m.tolist()
    np.testing.assert_allclose(res.sparsification_ratio, 1 - res.m / r)
    with pytest.raises(ValueError):
        res.m[0] = 1  # frozen


@pytest.mark.parametrize("convex,hetero", [(True, False), (True, True), (False, True)])
def test_matches_brute_force_on_tiny_instances(convex, hetero):
    rng = np.random.default_rng(123 + 2 * convex + hetero)
    for _ in range(20):
        K, r = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        inst = make_instance(rng, K, r, convex, hetero)
        Z, V = 10 ** rng.uniform(-2, 4), 10 ** rng.uniform(-2, 4)
        res = solve_tsfa_round(**inst, latency_queue_s=Z, v=V)
        best = brute_force(inst, Z, V)
        assert res.objective <= best * (1 + 1e-6), (K, r, res.objective, best)
        assert res.objective >= best * (1 - 1e-9)  # the brute force is the optimum
        assert res.converged


def test_zero_queue_keeps_every_component():
    inst = make_instance(np.random.default_rng(4), 6, 4)
    res = solve_tsfa_round(**inst, latency_queue_s=0.0, v=1.0)
    assert res.m.tolist() == [4] * 6
    a = P * inst["channel_gain"] / N0
    T_full, _ = min_max_latency(inst["payload_bits"][:, 4], inst["compute_latency_s"], a, B)
    assert res.latency_s == pytest.approx(float(T_full), rel=1e-9)


def test_large_queue_minimises_latency():
    inst = make_instance(np.random.default_rng(5), 6, 4)
    res = solve_tsfa_round(**inst, latency_queue_s=1e9, v=1.0)
    assert res.m.tolist() == [1] * 6
    a = P * inst["channel_gain"] / N0
    T_min, _ = min_max_latency(inst["payload_bits"][:, 1], inst["compute_latency_s"], a, B)
    assert res.latency_s == pytest.approx(float(T_min), rel=1e-9)


def test_queue_trades_error_for_latency_monotonically():
    inst = make_instance(np.random.default_rng(6), 3, 4)
    runs = [solve_tsfa_round(**inst, latency_queue_s=z, v=1.0) for z in np.logspace(-3, 2, 12)]
    lat = np.array([x.latency_s for x in runs])
    err = np.array([x.error_term for x in runs])
    assert np.all(np.diff(lat) <= 1e-9 * lat[:-1]) and np.all(np.diff(err) >= -1e-12)
    assert lat[-1] < lat[0] and err[-1] > err[0]


def test_device_that_cannot_transmit_is_reported_not_raised():
    inst = make_instance(np.random.default_rng(7), 3, 2)
    inst["channel_gain"] = np.array([1e-12, 0.0, 1e-12])
    res = solve_tsfa_round(**inst, latency_queue_s=1.0, v=1.0)
    assert not res.feasible and not res.converged and "[1]" in res.message
    assert res.latency_s == np.inf and res.bandwidth_hz.sum() <= B


def test_input_validation():
    inst = make_instance(np.random.default_rng(8), 3, 2)
    with pytest.raises(ValueError, match="strictly increasing"):
        solve_tsfa_round(**{**inst, "payload_bits": np.array([16.0, 5.0, 5.0])},
                         latency_queue_s=0.0, v=1.0)
    with pytest.raises(ValueError, match="error_curve"):
        solve_tsfa_round(**{**inst, "error_curve": np.ones(3)}, latency_queue_s=0.0, v=1.0)
    with pytest.raises(ValueError, match="latency_queue_s"):
        solve_tsfa_round(**inst, latency_queue_s=-1.0, v=1.0)
    with pytest.raises(ValueError, match="compute_latency_s"):
        solve_tsfa_round(**{**inst, "compute_latency_s": np.ones(4)}, latency_queue_s=0.0, v=1.0)


def test_lyapunov_queue_meets_the_long_term_latency_budget():
    """i.i.d. Rayleigh fading, fresh SOFT error curves each round, 2000 rounds."""
    K, r, rounds = 4, 4, 2000
    rng = np.random.default_rng(7)
    gains = rng.uniform(0.3, 1.0, K) * 1e-11 * rng.exponential(1.0, (rounds, K))
    comp = rng.uniform(0.02, 0.1, K)
    S = np.arange(r + 1) * 2e5 + 16.0
    eps = soft_error_curves(rng, (rounds, K, r))
    a = P * gains / N0
    T_one, _ = min_max_latency(np.broadcast_to(S[1], (rounds, K)), comp, a, B)
    T_all, _ = min_max_latency(np.broadcast_to(S[r], (rounds, K)), comp, a, B)
    budget = 0.5 * (T_one.mean() + T_all.mean())  # unsparsified (Z = 0) rounds average T_all
    assert T_all.mean() > 1.3 * budget

    Z, queue, latency, kept = 0.0, np.empty(rounds), np.empty(rounds), np.empty(rounds)
    for t in range(rounds):
        res = solve_tsfa_round(eps[t], S, comp, np.full(K, 1 / K), gains[t], P, N0, B, Z, 1.0,
                               n_grid=5, max_rounds=1, rtol=1e-9)
        Z = step_latency_queue(Z, res.latency_s, budget)
        queue[t], latency[t], kept[t] = Z, res.latency_s, res.m.mean()
    assert latency.mean() <= budget * (1 + 0.01)
    assert latency[rounds // 2:].mean() <= budget * (1 + 0.01)
    assert queue[-1] / rounds <= 0.01 * budget  # mean-rate stable
    first, second = queue[: rounds // 2], queue[rounds // 2:]
    assert second.mean() <= 1.5 * first.mean() + budget  # backlog not growing
    assert 1.0 < kept.mean() < r  # the controller sparsifies, but not everything


DIMS = [(384, 384)] * 12


def test_soft_tables_plug_into_the_online_stage():
    rng = np.random.default_rng(9)
    K, r = 5, 8
    S = soft_payload_table(r, DIMS, 32, "combinatorial")
    inst = make_instance(rng, K, r)
    res = solve_tsfa_round(inst["error_curve"], S, 0.05, np.full(K, 0.2), np.full(K, 1e-10),
                           P, N0, 2e7, 0.5, 1.0)
    assert res.feasible and res.bandwidth_hz.sum() <= 2e7 * (1 + 1e-9)


def test_modules_do_not_import_torch():
    code = (
        "import sys\nimport airtune.allocation.tsfa.solver, airtune.lora.soft_payload\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    src = str(Path(airtune.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
