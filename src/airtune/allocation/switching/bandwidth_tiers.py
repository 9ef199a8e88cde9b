r"""Bandwidth allocation of the switching paradigm: Algorithm 1, two-tier bisection (Lambert W).

Paper 3 [wang2025switching] allocates bandwidth by "two-tier binary search with Lambert W"; its
equations were not readable (papers.md §0), so this is the **[R] reconstruction** of
papers.md §3.5(b). For a fixed module choice :math:`x` and fixed powers :math:`p`:

.. math::
    \min_{b}\ \sum_k Q_k E_k(b_k),\quad E_k(b) = \frac{p_k S_{m(k)}}{R_k(b)}
    \quad\text{s.t.}\quad \sum_k b_k \le B,\quad b_k \ge b^{\min}_k,

with either rate model

.. math::
    R_k(b) = b\log_2\!\Big(1+\frac{p_kh_k}{I_k+bN_0}\Big)\ \ (\texttt{"shannon"})
    \qquad\text{or}\qquad R_k(b) = b\log_2(1+\theta_k)\ \ (\texttt{"fixed"}).

Both make :math:`E_k` convex and decreasing in :math:`b`, so the KKT point is global:
:math:`-Q_k E_k'(b_k)=\nu` wherever :math:`b_k>b^{\min}_k`.

The rate models, :func:`marginal_price` and :func:`deadline_min_bandwidth_hz` live in
:mod:`airtune.allocation.switching.rate_model` and are re-exported here.

* **Deadline floor** :math:`b^{\min}_k`: smallest :math:`b` with :math:`S_k/R_k(b)\le\Delta_k`.
  Shannon with :math:`I_k=0`: Lambert W, :math:`b^{\min}=a/(y-1)`,
  :math:`y=-W_{-1}(-ce^{-c})/c`, :math:`a=p h/N_0`, :math:`c=S\ln2/(\Delta a)` (reused from
  :func:`airtune.allocation.min_bandwidth.min_bandwidth_for_rate`); with :math:`I_k>0` no closed
  form exists and a vectorised bisection is used; fixed rate:
  :math:`b^{\min}=S_k/(\Delta_k\log_2(1+\theta_k))`.
* **Inner tier**: for a price :math:`\nu`, every device bisects :math:`\ln b_k` on
  :math:`[\ell_k,u_k]` to solve :math:`\pi_k(b_k)=\nu`, :math:`\pi_k=-Q_kE_k'=Q_kp_kS_kR_k'/R_k^2`
  (decreasing), clipped to the box (all devices at once).
* **Outer tier**: bisection on :math:`\ln\nu` in :math:`[\min_k\pi_k(u_k),\max_k\pi_k(\ell_k)]`:
  halve the region towards larger :math:`\nu` while :math:`\sum_kb_k(\nu)>B`, else towards
  smaller :math:`\nu`.

Stopping rules: inner, bracket :math:`\ln(b^{hi}/b^{lo})\le 10^{-13}` for every device (or
``max_inner``); outer, :math:`0\le B-\sum_k b_k(\nu^{hi})\le \mathrm{tol}\,B` or log-bracket
below :math:`10^{-15}` (or ``max_outer``). The final rounding residual is spread over the
weighted devices in proportion to :math:`b_k-\ell_k`, so :math:`\sum_kb_k=B` when any
device is weighted.

Simplification [R]: the :math:`b`-dependence of the outage :math:`q_k` (through :math:`bN_0`)
is ignored here; the power subproblem (:mod:`airtune.allocation.switching.power`) accounts for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike

from airtune.allocation.roots import BracketMethod, bracket_root, false_position_point
from airtune.allocation.switching.rate_model import (
    RateModel,
    deadline_min_bandwidth_hz,
    rate_and_slope,
    rate_bps,
)

__all__ = [
    "BandwidthTierResult",
    "bandwidth_for_switching",
    "two_tier_bandwidth",
]

_FLOOR = 1e-15  # lower end of the inner bracket where b_min = 0: _FLOOR * B


@dataclass(frozen=True, eq=False)
class BandwidthTierResult:
    r"""Outcome of :func:`two_tier_bandwidth` / :func:`bandwidth_for_switching` (never raised).

    Attributes
    ----------
    bandwidth_hz : numpy.ndarray, shape (K,)
        :math:`b_k` in Hz (0 for devices that do not take part).
    nu : float
        Bandwidth price :math:`\nu` (weighted J per Hz; ``nan`` when no price search ran).
    iterations_outer : int
        Outer bisection steps on :math:`\nu`.
    iterations_inner : int
        Inner bisection steps summed over the outer steps (each step serves all devices).
    converged : bool
        Both stopping rules were met.
    feasible : bool
        Every deadline floor is finite and :math:`\sum_k b^{\min}_k \le B`.
    message : str
        Termination reason (says which floors were dropped when infeasible).
    objective : float
        :math:`\sum_k Q_k E_k(b_k)`.
    energy_j : numpy.ndarray, shape (K,)
        Upload energy :math:`E_k(b_k)` in J (0 for idle devices).
    min_bandwidth_hz : numpy.ndarray, shape (K,)
        Deadline floors :math:`b^{\min}_k` in Hz (``inf`` where unreachable).
    module_bandwidth_hz, module_energy_j : numpy.ndarray, shape (M,), or None
        Per-module totals :math:`\sum_k x_{k,m}b_k`, :math:`\sum_k x_{k,m}E_k`
        (:func:`bandwidth_for_switching` only).
    """

    bandwidth_hz: np.ndarray
    nu: float
    iterations_outer: int
    iterations_inner: int
    converged: bool
    feasible: bool
    message: str
    objective: float
    energy_j: np.ndarray
    min_bandwidth_hz: np.ndarray
    module_bandwidth_hz: np.ndarray | None = None
    module_energy_j: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("bandwidth_hz", "energy_j", "min_bandwidth_hz", "module_bandwidth_hz",
                     "module_energy_j"):
            val = getattr(self, name)
            if val is not None:
                arr = np.array(val, dtype=float)
                arr.setflags(write=False)
                object.__setattr__(self, name, arr)


# --------------------------------------------------------------------------- Algorithm 1


def _inner(log_nu: float, log_w: np.ndarray, lo: np.ndarray, hi: np.ndarray, args: tuple[np.ndarray, ...],
           model: str, max_inner: int, search: BracketMethod = "bisection") -> tuple[np.ndarray, int, bool]:
    """Per-device root of ln pi_k(b) = ln nu in u = ln b, clipped to [lo, hi]; all devices at once."""
    def log_pi(b: np.ndarray, idx: slice | np.ndarray = slice(None)) -> np.ndarray:
        p, h, n0, i_w, th = (a[idx] for a in args)
        r, dr = rate_and_slope(b, p, h, n0, i_w, th, model)
        return cast(np.ndarray, log_w[idx] + np.log(dr) - 2.0 * np.log(r))

    at_lo, at_hi = log_pi(lo), log_pi(hi)
    b = np.where(at_lo <= log_nu, lo, hi)  # bracket ends where the root lies outside
    active = np.flatnonzero((at_lo > log_nu) & (at_hi < log_nu))
    if active.size == 0:
        return b, 0, True

    def g(u: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return log_pi(np.exp(u), active[idx]) - log_nu

    u, it, ok = bracket_root(g, np.log(lo[active]), np.log(hi[active]), at_lo[active] - log_nu,
                             at_hi[active] - log_nu, method=search, xtol=1e-13,
                             ftol=0.0 if search == "bisection" else 1e-12, max_iter=max_inner)
    b[active] = np.exp(u)
    return b, it, ok


def two_tier_bandwidth(
    weights: ArrayLike,
    payload_bits: ArrayLike,
    power_w: ArrayLike,
    channel_gain: ArrayLike,
    noise_psd_w_per_hz: ArrayLike,
    total_bandwidth_hz: float,
    interference_w: ArrayLike = 0.0,
    time_budget_s: ArrayLike | None = None,
    min_bandwidth_hz: ArrayLike | None = None,
    rate_model: RateModel = "shannon",
    sinr_threshold: ArrayLike = 1.0,
    participating: ArrayLike | None = None,
    tol: float = 1e-10,
    max_outer: int = 200,
    max_inner: int = 200,
    search: BracketMethod = "bisection",
) -> BandwidthTierResult:
    r"""Algorithm 1 [R]: minimise weighted upload energy by two-tier bisection (module docstring).

    Parameters
    ----------
    weights : array_like, shape (K,)
        :math:`Q_k \ge 0` (energy virtual-queue backlogs).
    payload_bits : array_like, shape (K,)
        :math:`S_{m(k)}` in bits.
    power_w : array_like, shape (K,)
        :math:`p_k` in W.
    channel_gain : array_like, shape (K,)
        :math:`h_k` (Shannon model).
    noise_psd_w_per_hz : float or array_like, shape (K,)
        :math:`N_0` in W/Hz.
    total_bandwidth_hz : float
        :math:`B` in Hz, > 0.
    interference_w : float or array_like, shape (K,), default 0
        Mean interference :math:`I_k` in W (Shannon model).
    time_budget_s : array_like, shape (K,), optional
        Upload deadline :math:`\Delta_k` in s; gives :math:`b^{\min}_k`
        (:func:`deadline_min_bandwidth_hz`). ``None``: no deadline.
    min_bandwidth_hz : array_like, shape (K,), optional
        Extra floor; the floor used is the larger of the two.
    rate_model : {"shannon", "fixed"}, default "shannon"
        Rate model (module docstring).
    sinr_threshold : float or array_like, shape (K,), default 1.0
        :math:`\theta_k` of the fixed-rate model.
    participating : array_like of bool, shape (K,), optional
        Devices that upload (default: those with :math:`S_k > 0`); others get 0 Hz.
    tol : float, default 1e-10
        Relative tolerance on :math:`B - \sum_k b_k`.
    max_outer, max_inner : int, default 200
        Iteration caps of the two tiers.
    search : {"bisection", "illinois"}, default "bisection"
        Root finder of both tiers (:mod:`airtune.allocation.roots`): the paper's bisection, or
        Illinois false position (same brackets and stopping rules, superlinear; the outer tier
        then works on :math:`\ln\sum_kb_k-\ln B`, nearly linear in :math:`\ln\nu`).

    Returns
    -------
    BandwidthTierResult
        Non-convergence and infeasibility are flags, never exceptions. Infeasible
        instances (an unreachable deadline, or :math:`\sum b^{\min} > B`) return the
        energy-optimal split with the offending floors dropped (all floors when the sum
        exceeds :math:`B`), ``feasible=False`` and a message saying so. If no device has
        :math:`Q_kp_kS_k>0`, ties are broken by minimising the unweighted energy
        (:math:`Q_k:=1`). A device with :math:`Q_k=0` among weighted ones gets its floor.

    Notes
    -----
    .. math::
        b_k(\nu) = \min\{u_k, \max\{\ell_k, \pi_k^{-1}(\nu)\}\},\qquad
        \nu^\star:\ \sum_k b_k(\nu^\star) = B,\qquad
        u_k = B - \sum_{j\ne k}\ell_j

    Complexity :math:`O(K\log(1/\epsilon)^2)`. Source: papers.md §3.5(b) [R];
    [wang2025switching] names the method only.
    """
    s, q, p, h, n0, i_w, th = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (
        payload_bits, weights, power_w, channel_gain, noise_psd_w_per_hz, interference_w,
        sinr_threshold)))
    k_dev, total = s.shape[0], float(total_bandwidth_hz)
    if not total > 0:
        raise ValueError(f"total_bandwidth_hz={total_bandwidth_hz} must be > 0")
    part = (s > 0) if participating is None else np.broadcast_to(
        np.asarray(participating, bool), s.shape)
    floor = np.zeros(k_dev)
    if time_budget_s is not None:
        floor = deadline_min_bandwidth_hz(s, time_budget_s, p, h, n0, i_w, rate_model, th, total)
    if min_bandwidth_hz is not None:
        floor = np.maximum(floor, np.asarray(min_bandwidth_hz, float))
    floor = np.where(part, floor, 0.0)
    sup_rate_pos = (np.log2(1.0 + th) > 0) if rate_model == "fixed" else (p * h > 0)
    dead = part & (s > 0) & ~sup_rate_pos
    notes, feasible = [], True
    if dead.any():
        feasible = False
        notes.append(f"{int(dead.sum())} device(s) have a zero rate at any bandwidth (0 Hz given)")
    lo = floor.copy()
    unreachable = part & ~np.isfinite(lo)
    if unreachable.any():
        feasible = False
        notes.append(f"{int(unreachable.sum())} device(s) cannot meet their deadline at any "
                     "bandwidth (their floor is dropped)")
        lo[unreachable] = 0.0
    if np.sum(lo) > total * (1.0 + 1e-12):
        feasible = False
        notes.append(f"sum of minimum bandwidths {np.sum(lo):.6g} Hz exceeds B = {total:.6g} Hz "
                     "(all floors dropped: energy-optimal split of B)")
        lo = np.zeros(k_dev)
    w = np.where(part & ~dead, q * p * s, 0.0)
    if not np.any(w > 0):
        w = np.where(part & ~dead & (p * s > 0), p * s, 0.0)
        if np.any(w > 0):
            notes.append("no device has positive weight: tie broken by unweighted energy")
    on = w > 0
    b = np.where(part & ~dead, lo, 0.0)
    nu, it_out, it_in, converged = math.nan, 0, 0, True
    if np.any(on) and total - np.sum(lo) > 0:
        hi = np.maximum(total - (np.sum(lo) - lo), lo)[on]  # (K_on,)
        lo_on = np.maximum(lo[on], _FLOOR * total)
        args = (p[on], h[on], n0[on], i_w[on], th[on])
        log_w = np.log(w[on])

        def log_pi(bb: np.ndarray) -> np.ndarray:
            r, dr = rate_and_slope(bb, *args, rate_model)
            return cast(np.ndarray, log_w + np.log(dr) - 2.0 * np.log(r))

        lnu_lo, lnu_hi = float(np.min(log_pi(hi))), float(np.max(log_pi(lo_on)))
        b_hi, it, ok_in = _inner(lnu_hi, log_w, lo_on, hi, args, rate_model, max_inner, search)
        it_in += it
        converged &= ok_in
        b_on, off = b_hi, float(np.sum(b[~on]))
        # g(ln nu) = ln(sum b) - ln B: positive at lnu_lo (every b_k at its cap), <= 0 at lnu_hi
        g_lo, g_hi = math.log(np.sum(hi) + off) - math.log(total), math.log(np.sum(b_hi) + off) - math.log(total)
        side = 0
        while it_out < max_outer:
            if total - (np.sum(b_on) + off) <= tol * total or lnu_hi - lnu_lo <= 1e-15:
                break
            it_out += 1
            mid = 0.5 * (lnu_lo + lnu_hi) if search == "bisection" else float(
                false_position_point(lnu_lo, lnu_hi, g_lo, g_hi))
            b_mid, it, ok_in = _inner(mid, log_w, lo_on, hi, args, rate_model, max_inner, search)
            it_in += it
            converged &= ok_in
            g_mid = math.log(np.sum(b_mid) + off) - math.log(total)
            if g_mid > 0:  # total exceeds the budget: raise nu
                lnu_lo, g_lo = mid, g_mid
                g_hi *= 0.5 if side == -1 else 1.0  # Illinois: lo moved twice
                side = -1
            else:
                lnu_hi, g_hi, b_on = mid, g_mid, b_mid
                g_lo *= 0.5 if side == 1 else 1.0
                side = 1
        residual = total - np.sum(b_on) - np.sum(b[~on])
        converged &= residual <= tol * total or lnu_hi - lnu_lo <= 1e-15
        above = b_on - lo_on  # spread the rounding residual over devices above their floor
        share = above if np.sum(above) > 0 else b_on
        b_on = b_on + max(residual, 0.0) * share / np.sum(share)
        b[on] = b_on
        nu = math.exp(lnu_hi)
    energy = np.zeros(k_dev)
    up = part & (s > 0)
    r = rate_bps(b, p, h, n0, i_w, rate_model, th)
    energy[up] = np.divide(p[up] * s[up], r[up], out=np.full(int(up.sum()), np.inf),
                           where=r[up] > 0)
    counted = up & (q > 0)
    objective = float(np.sum(q[counted] * energy[counted]))
    if not converged:
        notes.append(f"iteration cap reached (outer {it_out}, inner total {it_in})")
    message = "; ".join(notes) if notes else (
        f"converged: nu={nu:.6g} after {it_out} outer / {it_in} inner bisection steps")
    if not feasible:
        message = "infeasible: " + message
    return BandwidthTierResult(
        bandwidth_hz=b, nu=nu, iterations_outer=it_out, iterations_inner=it_in,
        converged=converged, feasible=feasible, message=message, objective=objective,
        energy_j=energy, min_bandwidth_hz=floor,
    )


def bandwidth_for_switching(
    x: ArrayLike,
    module_payload_bits: ArrayLike,
    weights: ArrayLike,
    power_w: ArrayLike,
    channel_gain: ArrayLike,
    noise_psd_w_per_hz: ArrayLike,
    total_bandwidth_hz: float,
    **kwargs: Any,
) -> BandwidthTierResult:
    r"""Algorithm 1 at module level: payloads from the switching result, per-module totals.

    Parameters
    ----------
    x : array_like of bool, shape (K, M)
        Module subscription (at most one per row), e.g. ``SwitchingResult.x``.
    module_payload_bits : array_like, shape (M,)
        :math:`S_m` in bits (e.g. :math:`N_{ad}r_m(d_{in}+d_{out})q`).
    weights, power_w, channel_gain, noise_psd_w_per_hz, total_bandwidth_hz
        As in :func:`two_tier_bandwidth`.
    **kwargs
        Passed to :func:`two_tier_bandwidth` (``time_budget_s``, ``rate_model`` ...).

    Returns
    -------
    BandwidthTierResult
        With ``module_bandwidth_hz`` and ``module_energy_j`` of shape (M,).

    Notes
    -----
    .. math::
        S_k = \sum_m x_{k,m}S_m,\qquad B_m = \sum_k x_{k,m}b_k,\qquad E_m = \sum_k x_{k,m}E_k

    Source: papers.md §3.3 / §3.5(b) [R].
    """
    xb = np.asarray(x, dtype=bool)
    payload = xb.astype(float) @ np.asarray(module_payload_bits, dtype=float)  # (K,)
    res = two_tier_bandwidth(weights, payload, power_w, channel_gain, noise_psd_w_per_hz,
                             total_bandwidth_hz, participating=xb.any(axis=1), **kwargs)
    xf = xb.astype(float)
    return BandwidthTierResult(
        bandwidth_hz=res.bandwidth_hz, nu=res.nu, iterations_outer=res.iterations_outer,
        iterations_inner=res.iterations_inner, converged=res.converged, feasible=res.feasible,
        message=res.message, objective=res.objective, energy_j=res.energy_j,
        min_bandwidth_hz=res.min_bandwidth_hz, module_bandwidth_hz=xf.T @ res.bandwidth_hz,
        module_energy_j=xf.T @ res.energy_j,
    )
