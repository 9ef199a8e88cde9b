r"""Algorithm 1 of the switching paradigm on a fixed-slot link: bandwidth for reliability (eqs. 16-20).

Paper 3 [wang2025switching], seed text §IV-B1: "to balance the tradeoff between transmission
reliability and energy consumption, we first optimize with regard to bandwidth"; the optimum
"can be derived in the form of Lambert-W function" given the multiplier (eq. 19), the implicit
equation is solved "through numerical algorithms such as Newton's method" (eq. 20), and "a
two-tier binary search-based algorithm" finds the multiplier (Algorithm 1). The symbols were
lost, so the formulas below are **[R] our reconstruction** on the link of ``wireless/link.py``
with an upload slot :math:`T` (``wireless.upload_slot_s``).

Model. Device :math:`k` uploads :math:`S_k` bits in the slot, so its rate is
:math:`a_k = S_k/T` and the SINR it needs on :math:`b` Hz is :math:`\theta_k(b)=2^{a_k/b}-1`.
The PPP + Rayleigh success probability (papers.md §3.3) is
:math:`s_k(b)=\exp(-h_k(b))` with

.. math::
    h_k(b) = A_k\,b\,\theta_k(b) + C_k\,\theta_k(b)^{\delta},\qquad
    A_k = \frac{d_k^\alpha N_0}{c\,p_k},\quad
    C_k = \lambda_I\pi d_k^2\Big(\frac{p_I}{p_k}\Big)^{\delta}\Gamma(1+\delta)\Gamma(1-\delta),
    \quad \delta = 2/\alpha .

Problem (16) [R]: :math:`\min_b \sum_k w_k h_k(b_k)` s.t. :math:`\sum_k b_k\le B`,
:math:`b_k\ge\ell_k`. :math:`h_k = -\ln s_k` is convex and decreasing in :math:`b` (tested), so
the KKT point is the global optimum. **Our choice**: the weight :math:`w_k` is the planner's
outage weight :math:`V\,\partial\mathcal G/\partial q_k` and the cost is :math:`-\ln s_k\ge q_k`,
a convex upper bound of the linearised outage cost :math:`w_kq_k` (which is S-shaped in
:math:`b`). Measured alternative: weighting by :math:`w_ks_k` (same first-order condition as
:math:`w_kq_k` at the current point) starves a device whose success is low, its power then drops
to the floor and the pair never recovers (a device at 300 m kept 2 mW and :math:`s=0` for
8 rounds). Energy: with a fixed
slot the transmit energy is :math:`p_kT`, independent of :math:`b`; the bandwidth step trades
reliability between devices and lowers the power the next power step needs.

Stationarity in :math:`u = a_k\ln2/b` (so :math:`\theta = e^u-1`):

.. math::
    w_k\varphi_k(u) = \nu,\qquad
    \varphi_k(u) = -h_k'(b) = A_k\big[(u-1)e^u + 1\big]
        + \frac{C_k\delta}{a_k\ln2}\,(e^u-1)^{\delta-1}u^2e^u ,

increasing in :math:`u` with :math:`\varphi_k(0)=0`. Without interference (:math:`C_k=0`) the
root is the Lambert-W closed form (eq. 19 [R])

.. math:: u^{(0)}_k = 1 + W_0\!\Big(\frac{\nu/(w_kA_k) - 1}{e}\Big),

an upper bound of the root when :math:`C_k>0`; safeguarded Newton on :math:`[0, u^{(0)}_k]`
(eq. 20 [R]) finds it. Outer tier: bisection on :math:`\ln\nu` until
:math:`\sum_k \max\{\ell_k, a_k\ln2/u_k(\nu)\} = B` (first tier per device, second tier
aggregated, as Algorithm 1); the last residual is handed out in proportion to :math:`b_k`
(more bandwidth never lowers :math:`s_k`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import gamma, lambertw

__all__ = ["ReliabilityBandwidthResult", "log_success_coefficients", "neg_log_success", "reliability_bandwidth",
           "stationarity_u"]

_LN2 = math.log(2.0)
_U_MAX = 700.0  # e^u stays finite


def log_success_coefficients(distance_m: ArrayLike, power_w: ArrayLike, noise_psd_w_per_hz: float,
                             path_loss_exponent: float, path_gain_at_1m: float, interferer_density_per_m2: float,
                             interferer_power_w: float) -> tuple[np.ndarray, np.ndarray, float]:
    r""":math:`(A_k, C_k, \delta)` of the module docstring (papers.md §3.3 closed form, split into its two factors)."""
    d, p = np.broadcast_arrays(np.asarray(distance_m, float), np.asarray(power_w, float))
    alpha = float(path_loss_exponent)
    delta = 2.0 / alpha
    a_coef = d**alpha * float(noise_psd_w_per_hz) / (float(path_gain_at_1m) * p)
    c_coef = (float(interferer_density_per_m2) * math.pi * d**2 * (float(interferer_power_w) / p) ** delta
              * float(gamma(1.0 + delta) * gamma(1.0 - delta)))
    return a_coef, c_coef, delta


def neg_log_success(bandwidth_hz: ArrayLike, rate_bps: ArrayLike, a_coef: ArrayLike, c_coef: ArrayLike,
                    delta: float) -> np.ndarray:
    r""":math:`h_k(b) = -\ln s_k(b) = A_kb\theta_k(b) + C_k\theta_k(b)^\delta`, :math:`\theta_k = 2^{a_k/b}-1` (``inf`` at 0 Hz)."""
    b, a, A, C = np.broadcast_arrays(*(np.asarray(v, float) for v in (bandwidth_hz, rate_bps, a_coef, c_coef)))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        theta = np.expm1(np.where(b > 0, a * _LN2 / np.where(b > 0, b, 1.0), np.inf))
        out = A * b * theta + C * theta**delta
    return np.where(a <= 0, 0.0, np.where(b > 0, out, np.inf))


def _phi(u: np.ndarray, A: np.ndarray, K: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """phi(u) and phi'(u); K = C delta / (a ln 2)."""
    eu = np.exp(u)
    em1 = np.expm1(u)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(u > 0, em1 ** (delta - 1.0) * u**2 * eu, 0.0)
        dlog = np.where(u > 0, (delta - 1.0) * eu / em1 + 2.0 / u + 1.0, 0.0)
    phi = A * ((u - 1.0) * eu + 1.0) + K * g
    dphi = A * u * eu + K * g * dlog
    return phi, dphi


def stationarity_u(target: ArrayLike, A: ArrayLike, C: ArrayLike, rate_bps: ArrayLike, delta: float,
                   iters: int = 100, rtol: float = 1e-13) -> np.ndarray:
    r"""Root :math:`u_k` of :math:`\varphi_k(u) = \nu/w_k` (``target``): Lambert-W start, safeguarded Newton."""
    t, A_, C_, a = np.broadcast_arrays(*(np.asarray(v, float) for v in (target, A, C, rate_bps)))
    K_ = C_ * delta / (a * _LN2)
    with np.errstate(divide="ignore", over="ignore"):
        arg = np.where(A_ > 0, (t / np.where(A_ > 0, A_, 1.0) - 1.0) / math.e, np.inf)
    u0 = np.where(np.isfinite(arg), 1.0 + np.real(lambertw(np.minimum(np.maximum(arg, -1.0 / math.e), 1e300))), _U_MAX)
    hi = np.minimum(u0, _U_MAX)
    lo = np.zeros_like(hi)
    u: np.ndarray = hi.copy()
    for _ in range(iters):
        f, df = _phi(u, A_, K_, delta)
        f = f - t
        lo, hi = np.where(f < 0, u, lo), np.where(f >= 0, u, hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = u - f / df
        bad = ~np.isfinite(step) | (step <= lo) | (step >= hi)
        new = np.where(bad, 0.5 * (lo + hi), step)
        if np.all(np.abs(new - u) <= rtol * np.maximum(u, 1e-300)):
            u = new
            break
        u = new
    return u


@dataclass(frozen=True, eq=False)
class ReliabilityBandwidthResult:
    """Outcome of :func:`reliability_bandwidth` (never raised)."""

    bandwidth_hz: np.ndarray
    nu: float
    iterations: int
    converged: bool
    feasible: bool
    objective: float
    message: str


def reliability_bandwidth(weights: ArrayLike, rate_bps: ArrayLike, a_coef: ArrayLike, c_coef: ArrayLike, delta: float,
                          total_bandwidth_hz: float, min_bandwidth_hz: ArrayLike = 0.0,
                          participating: ArrayLike | None = None, tol: float = 1e-10,
                          max_outer: int = 200) -> ReliabilityBandwidthResult:
    r"""Algorithm 1 [R]: minimise :math:`\sum_k w_kh_k(b_k)` s.t. :math:`\sum_kb_k\le B`, :math:`b_k\ge\ell_k`.

    Parameters
    ----------
    weights : (K,) :math:`w_k\ge0`; rate_bps : (K,) :math:`a_k = S_k/T`; a_coef, c_coef : (K,)
        :math:`A_k, C_k` (:func:`log_success_coefficients`); delta : :math:`2/\alpha`;
        total_bandwidth_hz : :math:`B`; min_bandwidth_hz : (K,) floors :math:`\ell_k`;
        participating : (K,) bool (default :math:`a_k>0`), others get 0 Hz.

    Returns
    -------
    ReliabilityBandwidthResult
        ``feasible`` is False when :math:`\sum\ell_k > B` (then :math:`B` is split in proportion
        to the floors). Devices with :math:`w_k=0` get their floor (or an equal share of what
        is left when nobody is weighted).
    """
    w, a, A, C, floor = np.broadcast_arrays(*(np.asarray(v, float) for v in (weights, rate_bps, a_coef, c_coef,
                                                                               min_bandwidth_hz)))
    B = float(total_bandwidth_hz)
    part = (a > 0) if participating is None else np.asarray(participating, bool) & (a > 0)
    b = np.zeros(w.shape)
    n = int(part.sum())
    if n == 0:
        return ReliabilityBandwidthResult(b, math.nan, 0, True, True, 0.0, "nobody uploads")
    lo = np.where(part, floor, 0.0)
    if lo.sum() > B * (1 + 1e-12):
        b = lo * B / lo.sum()
        return ReliabilityBandwidthResult(b, math.nan, 0, False, False, _objective(w, b, a, A, C, delta, part),
                                          "infeasible: floors exceed B (split in proportion to them)")
    on = part & (w > 0)
    if not on.any():
        b = np.where(part, lo + (B - lo.sum()) / n, 0.0)
        return ReliabilityBandwidthResult(b, math.nan, 0, True, True, 0.0, "no weighted device: equal split")

    def alloc(log_nu: float) -> np.ndarray:
        u = stationarity_u(math.exp(log_nu) / w[on], A[on], C[on], a[on], delta)
        out = lo.copy()
        out[on] = np.maximum(lo[on], a[on] * _LN2 / np.maximum(u, 1e-300))
        return cast(np.ndarray, out)

    def log_price_at(bw: np.ndarray) -> np.ndarray:   # ln(w phi(u(b)))
        u = np.minimum(a[on] * _LN2 / bw, _U_MAX)
        phi, _ = _phi(u, A[on], C[on] * delta / (a[on] * _LN2), delta)
        return np.asarray(np.log(w[on] * np.maximum(phi, 1e-300)), float)

    lnu_lo = float(np.min(log_price_at(np.full(int(on.sum()), B)))) - 1.0   # every b_k >= B: sum too large
    lnu_hi = float(np.max(log_price_at(np.full(int(on.sum()), B / (4.0 * n))))) + 1.0  # every b_k < B/n
    it, b_hi = 0, alloc(lnu_hi)
    while it < max_outer and lnu_hi - lnu_lo > 1e-13 and B - b_hi.sum() > tol * B:
        it += 1
        mid = 0.5 * (lnu_lo + lnu_hi)
        b_mid = alloc(mid)
        if b_mid.sum() > B:
            lnu_lo = mid
        else:
            lnu_hi, b_hi = mid, b_mid
    converged = B - b_hi.sum() <= tol * B or lnu_hi - lnu_lo <= 1e-13
    b = b_hi + max(B - b_hi.sum(), 0.0) * np.where(on, b_hi, 0.0) / b_hi[on].sum()
    b = np.where(part, b, 0.0)
    return ReliabilityBandwidthResult(b, math.exp(lnu_hi), it, bool(converged), True,
                                      _objective(w, b, a, A, C, delta, part),
                                      f"converged after {it} outer bisection steps" if converged
                                      else f"max_outer={max_outer} reached")


def _objective(w: np.ndarray, b: np.ndarray, a: np.ndarray, A: np.ndarray, C: np.ndarray, delta: float,
               part: np.ndarray) -> float:
    h = neg_log_success(b, a, A, C, delta)
    return float(np.sum(np.where(part & (w > 0), w * h, 0.0)))
