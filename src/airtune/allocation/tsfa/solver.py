r"""TSFA: offline rank choice and online sparsification + bandwidth control of SOFT [kim2025soft].

Two stages (papers.md §2.6; structure [S], every formula [R] -- a reconstruction, not the
paper's equations):

* **Stage 1, offline** (:func:`airtune.allocation.tsfa.rank.choose_rank`): pick the structural LoRA rank :math:`r` from a
  candidate grid by minimising a configurable convergence-bound surrogate under expected
  channel statistics and a latency budget :math:`\bar T`.
* **Stage 2, online, every round** (:func:`solve_tsfa_round`): Lyapunov drift-plus-penalty
  [neely2010lyapunov] over the kept components :math:`m_k` (sparsification ratio
  :math:`\rho_k = 1 - m_k/r`) and the FDMA bandwidths :math:`b_k`,

  .. math::
      \min_{m_k \in \{1..r\},\ b_k \ge 0}\ V \sum_k p_k^2\,\varepsilon_k(m_k) + Z(t)\,T(t)
      \quad\text{s.t.}\quad \sum_k b_k \le B,\qquad
      T(t) = \max_k \Big(\tau_k + \frac{S_k(m_k)}{r_k(b_k)}\Big),

  with :math:`r_k(b) = b\log_2(1 + p_k h_k / (N_0 b))` and the virtual queue of the long-term
  constraint :math:`\frac1T\sum_t T(t) \le \bar T` advanced by :func:`step_latency_queue`:
  :math:`Z(t+1) = \max\{Z(t) + T(t) - \bar T, 0\}`.

Every device keeps at least one component (:math:`m_k \ge 1`): a device that trained sends
something, and :math:`m_k = 0` would make the latency term independent of that device, a
different (scheduling) problem. ``eps`` tables come from
:func:`airtune.lora.ops.truncation_error_curve` (scaled by ``scale**2`` and summed over the
adapted matrices), payload tables from :func:`airtune.lora.soft_payload.soft_payload_table`.

The deadline maths of stage 2 (the min-max latency bandwidth split, the greedy levels at a
deadline) is in :mod:`airtune.allocation.tsfa.deadline`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from airtune.allocation.result import Allocation
from airtune.allocation.tsfa.deadline import greedy_levels, min_max_latency
from airtune.wireless.channel import shannon_rate_bps

__all__ = [
    "TSFARound",
    "solve_tsfa_round",
    "step_latency_queue",
    "per_device_array",
]

_STEP = 1e-8  # relative step below T*(m) in the deadline descent (> the greedy slack)


# --------------------------------------------------------------------------- stage 2
@dataclass(frozen=True, eq=False)
class TSFARound:
    r"""Result of one online TSFA round (scipy ``OptimizeResult`` style, non-convergence is data).

    Attributes
    ----------
    m : numpy.ndarray of int64, shape (K,)
        Kept rank components :math:`m_k \in \{1..r\}`.
    bandwidth_hz : numpy.ndarray, shape (K,)
        Uplink bandwidth :math:`b_k` in Hz, :math:`\sum_k b_k \le B`.
    deadline_s : float
        The search deadline :math:`\tau` at which ``m`` was chosen (never below
        ``latency_s``; larger when leftover bandwidth let the devices finish earlier).
    objective : float
        :math:`V\,\text{error\_term} + Z\,\text{latency\_s}`.
    error_term : float
        :math:`\sum_k p_k^2 \varepsilon_k(m_k)` (without :math:`V`).
    latency_s : float
        Round latency :math:`T(t) = \max_k T_k` with the returned bandwidths.
    iterations : int
        Greedy rounds of the deadline search (the grid, then the descent rounds).
    converged : bool
        Every deadline cell was searched to its end (see :func:`solve_tsfa_round`).
    feasible : bool
        False when some device cannot transmit at all (zero gain or power).
    message : str
    device_latency_s : numpy.ndarray, shape (K,)
        :math:`T_k = \tau_k + S_k(m_k) / r_k(b_k)` in s.
    rank : int
        Structural rank :math:`r`.
    """

    m: np.ndarray
    bandwidth_hz: np.ndarray
    deadline_s: float
    objective: float
    error_term: float
    latency_s: float
    iterations: int
    converged: bool
    feasible: bool
    message: str
    device_latency_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rank: int = 0

    def __post_init__(self) -> None:
        for name, dtype in (("m", np.int64), ("bandwidth_hz", float), ("device_latency_s", float)):
            arr = np.array(getattr(self, name), dtype=dtype)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def sparsification_ratio(self) -> np.ndarray:
        r""":math:`\rho_k = 1 - m_k / r`, shape (K,)."""
        return 1.0 - self.m / self.rank

    def to_allocation(self, power_w: ArrayLike) -> Allocation:
        """All devices selected, with these bandwidths; ``m`` and the rest go to ``extra``."""
        K = self.m.shape[0]
        return Allocation(
            selected=np.ones(K, bool),
            bandwidth_hz=self.bandwidth_hz,
            power_w=np.broadcast_to(np.asarray(power_w, float), (K,)).copy(),
            objective=self.objective,
            converged=self.converged,
            iterations=self.iterations,
            message=self.message,
            extra={
                "kept_components": self.m.copy(),
                "sparsification_ratio": self.sparsification_ratio,
                "latency_s": self.latency_s,
                "error_term": self.error_term,
                "deadline_s": self.deadline_s,
                "feasible": self.feasible,
            },
        )


def step_latency_queue(queue: float, latency_s: float, budget_s: float) -> float:
    r"""Advance the virtual queue of the long-term latency constraint [neely2010lyapunov].

    .. math:: Z(t+1) = \max\{Z(t) + T(t) - \bar T,\ 0\}

    Source: papers.md §2.6 [R]. ``queue`` and the result are in seconds.
    """
    return max(float(queue) + float(latency_s) - float(budget_s), 0.0)


def per_device_array(x: ArrayLike, K: int, name: str, positive: bool = False) -> np.ndarray:
    """Validate a per-device argument (scalar or shape (K,)) and return a float copy (K,)."""
    arr = np.asarray(x, float)
    if arr.ndim > 1 or arr.size not in (1, K):
        raise ValueError(f"{name} must be a scalar or have shape ({K},); got shape {arr.shape}.")
    arr = np.broadcast_to(arr.reshape(-1) if arr.ndim else arr, (K,)).astype(float)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or (positive and np.any(arr <= 0)):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be finite and {kind}, shape ({K},); got {arr!r}.")
    return arr


def solve_tsfa_round(
    error_curve: ArrayLike,
    payload_bits: ArrayLike,
    compute_latency_s: ArrayLike,
    weights: ArrayLike,
    channel_gain: ArrayLike,
    power_w: ArrayLike,
    noise_psd_w_per_hz: float,
    total_bandwidth_hz: float,
    latency_queue_s: float,
    v: float,
    *,
    n_grid: int = 33,
    max_rounds: int = 32,
    descent_cells: int | None = None,
    rtol: float = 1e-12,
) -> TSFARound:
    r"""Online stage of TSFA: kept components and bandwidths of one round [kim2025soft] [R].

    .. math::
        \min_{m_k \in \{1..r\},\ \sum_k b_k \le B}\
        V\sum_k p_k^2\,\varepsilon_k(m_k) + Z\max_k\Big(\tau_k + \frac{S_k(m_k)}{r_k(b_k)}\Big)

    Algorithm (papers.md §2.6 [R]), vectorised over devices and candidate deadlines:

    1. :math:`T_{\rm lo} = T^\star(\mathbf 1)`, :math:`T_{\rm hi} = T^\star(r\mathbf 1)`, where
       :math:`T^\star(\mathbf m)` is the min-max latency of :func:`min_max_latency`; no
       optimum lies outside :math:`[T_{\rm lo}, T_{\rm hi}]`.
    2. For each deadline :math:`\tau` of a grid of ``n_grid`` points: device :math:`k` needs
       :math:`b_k^{\min}(m, \tau)` (Lambert W) to send :math:`S_k(m)` by :math:`\tau`.
       Start from :math:`m_k = 1` and raise levels along each device's lower convex hull of
       :math:`(b^{\min}_k(m,\tau), p_k^2\varepsilon_k(m))`, best error reduction per Hz
       first, while :math:`\sum_k b_k \le B` (the greedy of the multiple-choice knapsack).
       This is the same point as the greedy repair "start from the largest :math:`m_k`, lower
       :math:`m` of the device with the largest bandwidth saving per unit error increase
       until the budget holds", run from the other end.
    3. For every distinct :math:`\mathbf m` found, re-solve the bandwidth exactly:
       leftover bandwidth is *not* kept but redistributed so that all devices finish
       together at :math:`T^\star(\mathbf m) \le \tau`; evaluate
       :math:`V\sum_kp_k^2\varepsilon_k + Z\,T^\star(\mathbf m)`; keep the best (ties: lower
       latency).
    4. Descent: the greedy map :math:`\tau \mapsto \mathbf m` is not monotone, and the step
       of a good :math:`\mathbf m` can fall between grid points. From every grid deadline
       :math:`\tau_g`, repeat :math:`\tau \leftarrow T^\star(\mathbf m)(1 - 10^{-8})` (just
       left of the deadline at which the current :math:`\mathbf m` stops fitting) and step 2-3,
       until :math:`\tau` leaves the cell :math:`(\tau_{g-1}, \tau_g]`; all cells descend
       together, one batched greedy per round. ``converged``: every cell was exhausted within
       ``max_rounds`` rounds (grid included); ``max_rounds=1`` is the plain grid search.

    Exactness: the greedy of step 2 is the LP-relaxation greedy, so at a fixed :math:`\tau`
    its error term exceeds the best by at most one hull segment. In tests it matched brute
    force over all :math:`r^K` level vectors (bandwidths solved exactly for each) to 1e-12 on
    1,100 random instances with :math:`K \le 6`, :math:`r \le 5`, convex and non-convex
    error tables, and no single-device change :math:`m_k \pm 1` improved it for
    :math:`K \le 40`; ``tests/allocation/test_tsfa.py`` checks 60 such instances.

    Cost: one round is a greedy on :math:`(G, K, r)` arrays (:math:`O(GKr\log(GKr))`, plus
    :math:`O(GKr^2)` for devices whose tables are not convex) and a min-max latency solve of
    a few Newton/chord steps on :math:`(G, K)`; a cell needs about as many rounds as greedy
    steps it holds (:math:`\lesssim K(r-1)/G`). Lower ``max_rounds`` or set
    ``descent_cells`` for thousands of devices.

    Parameters
    ----------
    error_curve : array_like, shape (K, r + 1)
        :math:`\varepsilon_k(m)` for :math:`m = 0..r` (column 0 is unused since
        :math:`m \ge 1`); non-negative, normally non-increasing in :math:`m`.
    payload_bits : array_like, shape (K, r + 1) or (r + 1,)
        :math:`S_k(m)` in bits, strictly increasing in :math:`m \ge 1`.
    compute_latency_s : array_like, shape (K,)
        :math:`\tau_k` in s (local compute, and downlink if counted).
    weights : array_like, shape (K,)
        Aggregation weights :math:`p_k` (normally :math:`D_k/\sum_j D_j`).
    channel_gain : array_like, shape (K,)
        Power gains :math:`h_k` (path gain x fading).
    power_w : float or array_like, shape (K,)
        Transmit power :math:`p_k` in W.
    noise_psd_w_per_hz : float
        :math:`N_0` in W/Hz.
    total_bandwidth_hz : float
        :math:`B` in Hz.
    latency_queue_s : float
        Virtual queue :math:`Z(t) \ge 0` in s.
    v : float
        Lyapunov trade-off :math:`V \ge 0`.
    n_grid : int, default 33
        Deadlines :math:`\tau_g` of the grid, evenly spaced on
        :math:`[T_{\rm lo}, T_{\rm hi}]` (>= 2).
    max_rounds : int, default 32
        Greedy rounds in all (the grid is the first).
    descent_cells : int or None, default None
        Descend only in the cells within this many of the one holding the latency of the
        best :math:`\mathbf m` on the grid (None: all cells).
    rtol : float, default 1e-12
        Relative tolerance of each min-max latency solve.

    Returns
    -------
    TSFARound
    """
    eps = np.asarray(error_curve, float)
    if eps.ndim != 2 or eps.shape[1] < 2 or not np.all(np.isfinite(eps)) or np.any(eps < 0):
        raise ValueError(
            "error_curve must be a finite non-negative (K, r + 1) table with r >= 1 (entry m "
            f"is the error of keeping m components); got shape {eps.shape}."
        )
    K, r = eps.shape[0], eps.shape[1] - 1
    S_all = np.broadcast_to(np.asarray(payload_bits, float), (K, r + 1))
    S = S_all[:, 1:]  # (K, r) bits of m = 1..r
    if not np.all(np.isfinite(S)) or np.any(S <= 0) or np.any(np.diff(S, axis=1) <= 0):
        raise ValueError(
            "payload_bits must be positive and strictly increasing in m for m = 1..r, shape "
            f"(K, r + 1) or (r + 1,); got {np.asarray(payload_bits)!r}."
        )
    comp = per_device_array(compute_latency_s, K, "compute_latency_s")
    p = per_device_array(weights, K, "weights")
    gain = per_device_array(channel_gain, K, "channel_gain")
    power = per_device_array(power_w, K, "power_w")
    N0, B = float(noise_psd_w_per_hz), float(total_bandwidth_hz)
    Z, V = float(latency_queue_s), float(v)
    if not (N0 > 0 and B > 0 and Z >= 0 and V >= 0) or not np.isfinite([N0, B, Z, V]).all():
        raise ValueError(
            f"need noise_psd_w_per_hz > 0, total_bandwidth_hz > 0, latency_queue_s >= 0, "
            f"v >= 0 (all finite); got {N0}, {B}, {Z}, {V}."
        )
    if n_grid < 2 or max_rounds < 1:
        raise ValueError(f"need n_grid >= 2 and max_rounds >= 1; got {n_grid}, {max_rounds}.")
    a = power * gain / N0  # (K,) Hz
    w_err = (p**2)[:, None] * eps[:, 1:]  # (K, r)
    idx = np.arange(K)

    def evaluate(levels: np.ndarray, taus: np.ndarray) -> tuple[np.ndarray, ...]:
        """Objective, T*(m), error term and bandwidths per row of levels (G, K), deduplicated."""
        uniq, inv = np.unique(levels, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        found_at = np.full(len(uniq), np.inf)
        np.minimum.at(found_at, inv, taus)  # each m is feasible (up to rounding) there
        T, bw = min_max_latency(
            S[idx, uniq], comp, a, B, rtol=rtol, lower_s=t_lo, upper_s=np.minimum(found_at, t_hi)
        )
        e_term = (p**2 * eps[idx, uniq + 1]).sum(-1)
        return (V * e_term + Z * T)[inv], T[inv], e_term[inv], bw[inv]

    if np.any(a <= 0):
        bw = np.full(K, B / K)
        m = np.ones(K, np.int64)
        rate = shannon_rate_bps(bw, power, gain, N0)
        lat = comp + np.divide(S[:, 0], rate, out=np.full(K, np.inf), where=rate > 0)
        return TSFARound(
            m, bw, math.inf, math.inf, float((p**2 * eps[:, 1]).sum()), math.inf, 0, False,
            False, f"devices {np.flatnonzero(a <= 0).tolist()} have zero power or gain: "
            "they cannot transmit, so no deadline is feasible", lat, r,
        )
    ends, _ = min_max_latency(np.stack([S[:, 0], S[:, -1]]), comp, a, B, rtol=max(rtol, 1e-6))
    t_lo, t_hi = float(ends[0]), float(ends[1])  # ~T*(1), T*(r): the optimum lies in between
    # best: objective, T*(m), error term, levels m - 1, deadline, bandwidths
    best = (math.inf, math.inf, math.inf, np.zeros(K, np.int64), t_lo, np.full(K, B / K))

    def search(taus: np.ndarray, ends_too: bool = False) -> tuple[np.ndarray, ...]:
        """Greedy levels at the deadlines, evaluated; updates ``best``; levels, T*, objective."""
        nonlocal best
        lev = greedy_levels(taus, S, w_err, comp, a, B)
        n = len(taus)
        if ends_too:  # m = 1 and m = r everywhere: the extreme points, exactly
            lev = np.concatenate([lev, np.zeros((1, K), np.int64), np.full((1, K), r - 1)])
            taus = np.concatenate([taus, [t_lo, t_hi]])
        obj, T, e_term, bws = evaluate(lev, taus)
        i = int(np.lexsort((T, obj))[0])
        if (obj[i], T[i]) < best[:2]:
            best = (float(obj[i]), float(T[i]), float(e_term[i]), lev[i].copy(), float(taus[i]),
                    bws[i].copy())
        return lev[:n], T[:n], obj[:n]

    taus = np.linspace(t_lo, t_hi, n_grid)
    floor = np.concatenate([[t_lo], taus[:-1]])  # chain g descends through (taus[g-1], taus[g]]
    cur_lev, cur_T, _ = search(taus, ends_too=True)
    active = cur_T * (1 - _STEP) > floor
    if descent_cells is not None:  # only the cells around the latency of the best m so far
        jb = int(np.searchsorted(taus, best[1]))
        g = np.arange(n_grid)
        active &= (g > jb - descent_cells) & (g <= jb + descent_cells)
    rounds = 1
    while active.any() and rounds < max_rounds:
        ids = np.flatnonzero(active)
        lev, T, _ = search(cur_T[ids] * (1 - _STEP))  # just left of each step: m is infeasible
        stuck = np.all(lev == cur_lev[ids], axis=1)
        cur_lev[ids], cur_T[ids] = lev, T
        active[ids[stuck]] = False
        active &= cur_T * (1 - _STEP) > floor
        rounds += 1
    converged = not active.any()
    msg = (
        f"all greedy steps between {n_grid} deadlines visited" if converged
        else f"stopped after max_rounds={max_rounds} descent rounds ({int(active.sum())} "
        "deadline cells not fully explored)"
    )
    _, _, err_b, lev_b, tau_b, bw = best
    rate = shannon_rate_bps(bw, power, gain, N0)
    dev_lat = comp + np.divide(S[idx, lev_b], rate, out=np.full(K, np.inf), where=rate > 0)
    latency = float(dev_lat.max())  # = T*(m) up to rounding
    return TSFARound(
        m=lev_b + 1, bandwidth_hz=bw, deadline_s=max(tau_b, latency),
        objective=V * err_b + Z * latency, error_term=err_b, latency_s=latency,
        iterations=rounds, converged=converged, feasible=True, message=msg,
        device_latency_s=dev_lat, rank=r,
    )
