r"""TSFA stage 2 at a fixed deadline: min-max latency bandwidths and greedy kept components.

Deadline maths of the online stage of TSFA [kim2025soft] (papers.md §2.6 [R], our
reconstruction; the round solver is :func:`airtune.allocation.tsfa.solver.solve_tsfa_round`):

* :func:`min_max_latency`: for fixed payloads, the smallest common deadline :math:`T^\star`
  and the bandwidths that meet it with :math:`\sum_k b_k \le B` (also used by stage 1,
  :mod:`airtune.allocation.tsfa.rank`);
* ``greedy_levels``: for each candidate deadline :math:`\tau`, the greedy of the
  multiple-choice knapsack along each device's lower convex hull of
  :math:`(b^{\min}_k(m,\tau), p_k^2\varepsilon_k(m))` (``_hull_segments``).

The minimum bandwidth that carries a rate is the Lambert-W formula of papers.md §1.6
(:func:`airtune.allocation.min_bandwidth.min_bandwidth_from_snr_hz`).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from airtune.allocation.min_bandwidth import min_bandwidth_from_snr_hz

__all__ = [
    "min_max_latency",
    "greedy_levels",
]

_LN2 = math.log(2.0)


# --------------------------------------------------------------------------- bandwidth / latency
def min_max_latency(
    payload_bits: ArrayLike,
    compute_latency_s: ArrayLike,
    snr_hz: ArrayLike,
    total_bandwidth_hz: float,
    rtol: float = 1e-12,
    max_iter: int = 100,
    lower_s: ArrayLike | None = None,
    upper_s: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Smallest common deadline for fixed payloads, and the bandwidths that meet it.

    Root of the convex decreasing function

    .. math:: F(T) = \sum_k b^{\min}_k\!\Big(\frac{S_k}{T - \tau_k}\Big) - B

    bracketed by :math:`T_{\rm lo} = \max_k(\tau_k + S_k\ln 2/a_k)` (infinite bandwidth) and
    the latency of the equal split :math:`b_k = B/K`. Each iteration evaluates two points: the
    larger Newton step from either end (a tangent of a convex decreasing :math:`F` crosses zero
    below the root) and the chord (above the root), with bisection as the safeguard; each
    point replaces the end of its sign. Stops when :math:`T_{\rm hi} - T_{\rm lo} \le`
    ``rtol`` :math:`T_{\rm hi}` or :math:`-` ``rtol`` :math:`B \le F(T_{\rm hi}) \le 0`
    (about 5 evaluations at ``rtol = 1e-12``). Returns the
    feasible end, so :math:`\sum_k b_k \le B` holds as computed, and every device finishes
    exactly at the deadline: leftover bandwidth goes to whoever needs it (min-max latency,
    papers.md §2.6 [R]).

    Parameters
    ----------
    payload_bits : array_like, shape (..., K)
        Bits :math:`S_k` per device (>= 0).
    compute_latency_s : array_like, broadcastable to (..., K)
        :math:`\tau_k` in s.
    snr_hz : array_like, broadcastable to (..., K)
        :math:`a_k = p_k h_k / N_0` in Hz.
    total_bandwidth_hz : float
        :math:`B` in Hz.
    rtol : float, default 1e-12
    max_iter : int, default 100
    lower_s, upper_s : array_like, shape (...), optional
        Guesses of :math:`T^\star` from below and above (e.g. known bounds), evaluated first
        instead of interior points; wrong guesses cost iterations, not accuracy.

    Returns
    -------
    latency_s : numpy.ndarray, shape (...)
        :math:`T^\star` (``inf`` where a device with :math:`S_k > 0` has :math:`a_k = 0`).
    bandwidth_hz : numpy.ndarray, shape (..., K)
        :math:`b_k^{\min}(T^\star)` (the equal split where :math:`T^\star` is ``inf``).
    """
    S, tau, a = np.broadcast_arrays(
        np.asarray(payload_bits, float),
        np.asarray(compute_latency_s, float),
        np.asarray(snr_hz, float),
    )
    B = float(total_bandwidth_hz)
    share = B / S.shape[-1]
    pos = S > 0

    def f_df(T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """F(T), F'(T) and the bandwidths (..., K), for T of shape (n, ...)."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            slack = T[..., None] - tau
            rate = np.where(pos, np.where(slack > 0, S / slack, np.inf), 0.0)
            b = min_bandwidth_from_snr_hz(rate, a)
            x = a / b
            drate_db = (np.log1p(x) - x / (1.0 + x)) / _LN2  # d r / d b at b
            db_dT = np.where(pos & (b < np.inf), -rate / slack / drate_db, 0.0)
        return b.sum(-1) - B, db_dT.sum(-1), b

    with np.errstate(divide="ignore", invalid="ignore"):
        lo = (tau + np.where(pos, S * _LN2 / a, 0.0)).max(-1)  # infinite bandwidth
        hi = (tau + np.where(pos, S / (share * np.log2(1.0 + a / share)), 0.0)).max(-1)
    bad = ~np.isfinite(hi)
    lo, hi = np.where(bad, 0.0, lo), np.where(bad, 1.0, hi)
    f_lo, df_lo = np.full(lo.shape, np.inf), np.full(lo.shape, np.nan)
    f_hi: np.ndarray   # the feasible end's values, bound at the first evaluation below
    df_hi: np.ndarray
    b_hi: np.ndarray

    def classify(t: np.ndarray, ft: np.ndarray, dft: np.ndarray, bt: np.ndarray) -> None:
        """Move the infeasible (F > 0) or the feasible (F <= 0) end of the bracket to t."""
        nonlocal lo, f_lo, df_lo, hi, f_hi, df_hi, b_hi
        move = (t > lo) & (t < hi)
        up, dn = move & (ft > 0), move & (ft <= 0)
        lo, f_lo, df_lo = np.where(up, t, lo), np.where(up, ft, f_lo), np.where(up, dft, df_lo)
        hi, f_hi, df_hi = np.where(dn, t, hi), np.where(dn, ft, f_hi), np.where(dn, dft, df_hi)
        b_hi = np.where(dn[..., None], bt, b_hi)

    # first evaluation: the natural feasible end and two probes (the hints, or interior points)
    mid = 0.5 * (lo + hi)
    probe_lo = mid if lower_s is None else np.where(bad, 0.0, lower_s)
    probe_up = lo + 0.75 * (hi - lo) if upper_s is None else np.where(bad, 1.0, upper_s)
    pts = np.stack([hi, np.clip(probe_lo, lo, hi), np.clip(probe_up, lo, hi)])
    f, df, b = f_df(pts)
    f_hi, df_hi, b_hi = f[0], df[0], b[0]
    classify(pts[2], f[2], df[2], b[2])
    classify(pts[1], f[1], df[1], b[1])  # a feasible lower bound is the root: F ~ 0 stops
    for _ in range(max_iter):
        if np.all((hi - lo <= rtol * hi) | (f_hi >= -rtol * B) | bad):
            break
        mid = 0.5 * (lo + hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            # tangents of a convex decreasing F cross zero below the root, the chord above it
            below = np.fmax(lo - f_lo / df_lo, hi - f_hi / df_hi)
            chord = lo + f_lo * (hi - lo) / (f_lo - f_hi)
        chord = np.maximum(chord, lo + 1e-3 * (hi - lo))  # no stall when f_lo ~ 0
        cand = np.stack(
            [
                np.where((below > lo) & (below < hi), below, mid),
                np.where((chord > lo) & (chord < hi), chord, mid),
            ]
        )
        f, df, b = f_df(cand)
        classify(cand[0], f[0], df[0], b[0])
        classify(cand[1], f[1], df[1], b[1])
    return np.where(bad, np.inf, hi), np.where(bad[..., None], share, b_hi)


def _hull_segments(b: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segments of the lower convex hull of the points (b_j, e_j), j = 0..r-1, walked from j = 0.

    b (n, r) increasing (inf = unreachable), e (n, r). Returns the end level, bandwidth step
    and efficiency (error reduction per Hz; -inf = no segment) of each segment, (n, r - 1).
    Rows whose consecutive segments are already convex (the usual SOFT case) take a fast path.
    """
    n, r = b.shape
    fin = np.isfinite(b[:, 1:])
    gain = e[:, :-1] - e[:, 1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        db = b[:, 1:] - b[:, :-1]
        good = fin & (gain > 0)
        eff = np.where(good, gain / db, -np.inf)
    seg_to = np.broadcast_to(np.arange(1, r), (n, r - 1)).copy()
    seg_db = np.where(good, db, np.inf)
    convex = np.all(good | ~fin, axis=1) & np.all(eff[:, 1:] <= eff[:, :-1], axis=1)
    rows = np.flatnonzero(~convex)
    if rows.size:  # general rows: from the current vertex, the steepest later point
        bs, es = b[rows], e[rows]
        lv = np.arange(r)
        cur = np.zeros(rows.size, np.int64)
        for s in range(r - 1):
            b_cur = np.take_along_axis(bs, cur[:, None], 1)
            g = np.take_along_axis(es, cur[:, None], 1) - es
            d = np.maximum(bs - b_cur, 0.0)
            valid = (lv > cur[:, None]) & np.isfinite(bs) & (g > 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                ef = np.where(valid, np.where(d > 0, g / d, np.inf), -np.inf)
            nxt = np.argmax(ef, 1)  # ties -> nearest level
            best = np.take_along_axis(ef, nxt[:, None], 1)[:, 0]
            has = best > -np.inf
            seg_to[rows, s] = nxt
            seg_db[rows, s] = np.where(has, np.take_along_axis(d, nxt[:, None], 1)[:, 0], np.inf)
            eff[rows, s] = best
            cur = np.where(has, nxt, cur)
    return seg_to, seg_db, np.minimum.accumulate(eff, axis=1)  # hull order, robust to rounding


def greedy_levels(
    tau: np.ndarray, S: np.ndarray, w_err: np.ndarray, comp: np.ndarray, a: np.ndarray, B: float
) -> np.ndarray:
    """Per deadline, the greedy multiple-choice-knapsack levels (0-based index of m - 1).

    tau (G,), S (K, r) bits of m = 1..r, w_err (K, r), comp (K,), a (K,). Returns (G, K).
    """
    G = tau.shape[0]
    K, r = S.shape
    slack = tau[:, None] - comp  # (G, K)
    rate = np.divide(
        S[None], slack[..., None], out=np.full((G, K, r), np.inf), where=slack[..., None] > 0
    )
    b = min_bandwidth_from_snr_hz(rate, a[None, :, None])  # (G, K, r), inf where unreachable
    budget = B - b[..., 0].sum(-1)  # (G,) left after m = 1 everywhere
    if r == 1:
        return np.zeros((G, K), np.int64)
    e = np.broadcast_to(w_err, (G, K, r)).reshape(G * K, r)
    seg_to, seg_db, seg_eff = _hull_segments(b.reshape(G * K, r), e)
    eff_flat = seg_eff.reshape(G, -1)  # (G, K (r - 1)), device-major, hull order inside
    db_flat = np.where(eff_flat > -np.inf, seg_db.reshape(G, -1), np.inf)
    order = np.argsort(-eff_flat, axis=-1, kind="stable")  # best error-per-Hz first
    cum = np.cumsum(np.take_along_axis(db_flat, order, -1), axis=-1)
    # a prefix (every db > 0); the 1e-9 B slack absorbs rounding of the cumulative sum, and
    # the exact min-max latency is re-solved for the levels found anyway
    take_sorted = cum <= budget[:, None] + 1e-9 * B
    taken = np.zeros_like(take_sorted)
    np.put_along_axis(taken, order, take_sorted, -1)
    level = np.where(taken.reshape(G, K, r - 1), seg_to.reshape(G, K, r - 1), 0).max(-1)
    return np.where((budget >= -1e-9 * B)[:, None], level, 0)
