r"""Energy water-filling for FDMA uplinks (pure numpy/scipy); minimum bandwidths re-exported.

The uplink rate of device :math:`k` on bandwidth :math:`b_k` is the Shannon rate

.. math:: r_k(b_k) = b_k \log_2\!\Big(1 + \frac{a_k}{b_k}\Big),\qquad a_k = \frac{p_k h_k}{N_0}

(:math:`a_k` in Hz: the bandwidth at which the SNR would be 1). It is increasing and concave
in :math:`b_k` with :math:`r_k(\infty) = a_k/\ln 2`, so the upload energy
:math:`E_k(b_k) = p_k S_k / r_k(b_k)` is decreasing and convex.

* :func:`min_bandwidth_for_rate` / :func:`min_bandwidth_for_deadline` (re-exported from
  :mod:`airtune.allocation.min_bandwidth`): the smallest :math:`b_k` with
  :math:`r_k(b_k) \ge R_k` in closed form (lower branch of Lambert W).
* :func:`bandwidth_for_marginal_price`: the :math:`b_k` at which the weighted marginal energy
  saving :math:`-Q_k\,\mathrm dE_k/\mathrm db_k` equals a price :math:`\nu`.
* :func:`waterfill`: :math:`\min \sum_k Q_k E_k(b_k)` s.t. :math:`\sum_k b_k = B`,
  :math:`b_k \ge b^{\min}_k` by a root search on :math:`\nu`.

Source: papers.md §1.3 (rate, energy) and §1.6 steps 1-2 (Lambert-W minimum bandwidth,
water-filling), all [R]: our reconstruction of [wang2025sfl], not the paper's own equations.
Everything is vectorised over devices (shape ``(K,)``); no Python loop over devices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import brentq

from airtune.allocation.min_bandwidth import (
    LN2,
    as_float_array,
    snr_bandwidth_hz,
)
from airtune.wireless.channel import shannon_rate_bps
from airtune.wireless.cost import comm_latency_s, tx_energy_j

__all__ = [
    "WaterfillResult",
    "bandwidth_for_marginal_price",
    "marginal_energy_price",
    "upload_energy_j",
    "waterfill",
]

_SERIES_X = 1e-3  # below this x, D(x) = ln(1+x) - x/(1+x) is summed as a series (no cancellation)
_FLOOR = 1e-15  # a weighted device never gets less than _FLOOR * B (its energy is inf at b = 0)


# --------------------------------------------------------------------------- energy and its slope


def upload_energy_j(
    bandwidth_hz: ArrayLike,
    payload_bits: ArrayLike,
    power_w: ArrayLike,
    channel_gain: ArrayLike,
    noise_psd_w_per_hz: ArrayLike,
) -> np.ndarray:
    r"""Upload energy :math:`E_k(b_k) = p_k S_k / r_k(b_k)` in J.

    Parameters
    ----------
    bandwidth_hz : float or array_like, shape (K,)
        Bandwidth :math:`b_k` in Hz.
    payload_bits, power_w, channel_gain, noise_psd_w_per_hz
        As in :func:`min_bandwidth_for_deadline`.

    Returns
    -------
    numpy.ndarray, shape (K,)
        Energy in J: 0 where :math:`p_k S_k = 0`, ``inf`` where the payload is positive and
        the rate is 0.

    Notes
    -----
    .. math:: E_k(b_k) = \frac{p_k S_k}{b_k \log_2(1 + p_k h_k/(b_k N_0))}

    Source: papers.md §1.3 [R] (reuses ``shannon_rate_bps``, ``comm_latency_s``, ``tx_energy_j``).
    """
    rate = shannon_rate_bps(bandwidth_hz, power_w, channel_gain, noise_psd_w_per_hz)
    return tx_energy_j(power_w, comm_latency_s(payload_bits, rate))


def _log_phi(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r""":math:`\ln\varphi(x)` and :math:`s = \mathrm d\ln\varphi/\mathrm d\ln x`, x > 0.

    :math:`\varphi(x) = x^2 D(x)/L(x)^2`, :math:`L = \ln(1+x)`, :math:`D = L - x/(1+x)`.
    """
    lg = np.log1p(x)
    xs = np.minimum(x, _SERIES_X)
    series = xs**2 * (0.5 - xs * (2.0 / 3.0 - xs * (0.75 - xs * 0.8)))
    d = np.where(x < _SERIES_X, series, lg - x / (1.0 + x))
    log_phi = 2.0 * np.log(x) + np.log(d) - 2.0 * np.log(lg)
    slope = 2.0 + x**2 / ((1.0 + x) ** 2 * d) - 2.0 * x / ((1.0 + x) * lg)
    return log_phi, slope


def marginal_energy_price(
    bandwidth_hz: ArrayLike,
    weights: ArrayLike,
    payload_bits: ArrayLike,
    power_w: ArrayLike,
    channel_gain: ArrayLike,
    noise_psd_w_per_hz: ArrayLike,
) -> np.ndarray:
    r"""Weighted marginal energy saving :math:`-Q_k\,\mathrm dE_k/\mathrm db_k` (J/Hz x weight).

    Parameters
    ----------
    bandwidth_hz : float or array_like, shape (K,)
        Bandwidth :math:`b_k` in Hz, > 0.
    weights : float or array_like, shape (K,)
        Weights :math:`Q_k \ge 0` (Lyapunov queue backlogs).
    payload_bits, power_w, channel_gain, noise_psd_w_per_hz
        As in :func:`upload_energy_j`; :math:`a_k > 0` required where the weight is positive.

    Returns
    -------
    numpy.ndarray, shape (K,)
        :math:`\pi_k(b_k) \ge 0`, decreasing in :math:`b_k` (0 where :math:`Q_k p_k S_k = 0`).

    Notes
    -----
    With :math:`x = a_k/b_k`, :math:`L = \ln(1+x)`, :math:`D = L - x/(1+x)`:

    .. math::
        \pi_k(b) = Q_k p_k S_k \frac{r_k'(b)}{r_k(b)^2}
                 = \frac{Q_k p_k S_k \ln 2}{a_k^2}\,\frac{x^2 D(x)}{L(x)^2}.

    Source: papers.md §1.6 step 2 [R].
    """
    b, wq, s, p, a = np.broadcast_arrays(
        as_float_array(bandwidth_hz), as_float_array(weights), as_float_array(payload_bits), as_float_array(power_w),
        snr_bandwidth_hz(power_w, channel_gain, noise_psd_w_per_hz),
    )
    w = wq * p * s
    out = np.zeros(b.shape)
    on = w > 0
    if np.any(on):
        log_phi, _ = _log_phi(a[on] / b[on])
        out[on] = np.exp(np.log(w[on] * LN2) - 2.0 * np.log(a[on]) + log_phi)
    return out


def _solve_log_x(
    log_tau: np.ndarray,
    u_lo: np.ndarray,
    u_hi: np.ndarray,
    f_lo: np.ndarray,
    f_hi: np.ndarray,
    max_iter: int = 100,
) -> tuple[np.ndarray, int]:
    r"""Solve :math:`\ln\varphi(e^u) = \ln\tau` for :math:`u \in [u_{lo}, u_{hi}]` (vectorised).

    ``f_lo``, ``f_hi`` are :math:`\ln\varphi` at the bracket ends. Safeguarded Newton in
    :math:`u = \ln x` (:math:`\mathrm d\ln\varphi/\mathrm du \in [1.7, 2]`): a step that
    leaves the bracket is replaced by bisection; stops when every step is below
    :math:`10^{-13}` (relative in :math:`x`) or the residual is at rounding level. Returns
    ``(u, iterations)``; clamps to the bracket end where no root lies inside.
    """
    atol = 8.0 * np.finfo(float).eps * np.maximum(1.0, np.abs(log_tau))  # rounding of ln(tau)
    lo, hi = u_lo.copy(), u_hi.copy()
    u = np.clip(0.5 * (log_tau + math.log(2.0)), lo, hi)  # phi ~ x^2/2 for small x
    u = np.where(f_lo - log_tau >= -atol, u_lo, np.where(f_hi - log_tau <= atol, u_hi, u))
    active = (f_lo - log_tau < -atol) & (f_hi - log_tau > atol)
    it = 0
    while np.any(active) and it < max_iter:
        it += 1
        val, slope = _log_phi(np.exp(u))
        res = val - log_tau
        hi = np.where(active & (res > 0), u, hi)
        lo = np.where(active & (res <= 0), u, lo)
        u_new = u - res / slope
        inside = (u_new >= lo) & (u_new <= hi)
        u_new = np.where(inside, u_new, 0.5 * (lo + hi))
        step = np.abs(u_new - u)
        u = np.where(active & (np.abs(res) > atol), u_new, u)
        active &= (step > 1e-13 * np.maximum(1.0, np.abs(u))) & (np.abs(res) > atol)
    return u, it


def bandwidth_for_marginal_price(
    price: float,
    weights: ArrayLike,
    payload_bits: ArrayLike,
    power_w: ArrayLike,
    channel_gain: ArrayLike,
    noise_psd_w_per_hz: ArrayLike,
    lower_hz: ArrayLike,
    upper_hz: ArrayLike,
) -> np.ndarray:
    r"""Bandwidth at which the weighted marginal energy saving equals a price.

    Parameters
    ----------
    price : float
        Price :math:`\nu > 0` of one Hz (the multiplier of :math:`\sum_k b_k = B`).
    weights : float or array_like, shape (K,)
        :math:`Q_k \ge 0`.
    payload_bits, power_w, channel_gain, noise_psd_w_per_hz
        As in :func:`marginal_energy_price`.
    lower_hz, upper_hz : float or array_like, shape (K,)
        Box :math:`[\ell_k, u_k]` in Hz, :math:`0 \le \ell_k \le u_k < \infty`.

    Returns
    -------
    numpy.ndarray, shape (K,)
        :math:`b_k(\nu)` in Hz; :math:`\ell_k` where :math:`Q_k p_k S_k = 0`.

    Notes
    -----
    .. math::
        b_k(\nu) = \min\big\{u_k,\ \max\{\ell_k,\ \beta_k(\nu)\}\big\},\qquad
        \pi_k(\beta_k(\nu)) = \nu,

    unique because :math:`\pi_k` (:func:`marginal_energy_price`) decreases from :math:`\infty`
    to 0. Solved as :math:`\varphi(x_k) = \nu a_k^2/(Q_k p_k S_k \ln 2)` in
    :math:`x_k = a_k/b_k` by safeguarded Newton in :math:`\ln x_k` (bisection when Newton
    leaves the bracket; stops when steps fall below :math:`10^{-13}`), all devices at once.
    Source: papers.md §1.6 step 2 [R].
    """
    prepared = _prepare(weights, payload_bits, power_w, channel_gain, noise_psd_w_per_hz,
                        lower_hz, upper_hz)
    return _PriceMap(*prepared)(math.log(price))


def _prepare(weights: ArrayLike, payload_bits: ArrayLike, power_w: ArrayLike, channel_gain: ArrayLike,
             noise_psd_w_per_hz: ArrayLike, lower_hz: ArrayLike,
             upper_hz: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    wq, s, p, a, lo, hi = np.broadcast_arrays(
        as_float_array(weights), as_float_array(payload_bits), as_float_array(power_w),
        snr_bandwidth_hz(power_w, channel_gain, noise_psd_w_per_hz), as_float_array(lower_hz), as_float_array(upper_hz),
    )
    w = wq * p * s  # effective weight: Q_k E_k(b) = w_k / r_k(b)
    return w, a, lo.astype(float), hi.astype(float)


class _PriceMap:
    """nu -> b(nu) for fixed devices; the bracket ends of the inner solve are computed once."""

    def __init__(self, w: np.ndarray, a: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        self.on = w > 0
        self.lo = lo
        self.hi_on = hi[self.on]
        self.lo_on = np.maximum(lo[self.on], _FLOOR * self.hi_on)
        a_on = a[self.on]
        self.offset = 2.0 * np.log(a_on) - np.log(w[self.on] * LN2)  # ln tau = ln nu + offset
        self.u_lo, self.u_hi = np.log(a_on / self.hi_on), np.log(a_on / self.lo_on)
        self.f_lo, self.f_hi = _log_phi(np.exp(self.u_lo))[0], _log_phi(np.exp(self.u_hi))[0]
        self.a_on = a_on

    def log_price_range(self) -> tuple[float, float]:
        """ln nu at which every weighted device sits at its upper / lower end (min, max)."""
        return float(np.min(self.f_lo - self.offset)), float(np.max(self.f_hi - self.offset))

    def __call__(self, log_nu: float) -> np.ndarray:
        b: np.ndarray = self.lo.copy()
        if np.any(self.on):
            u, _ = _solve_log_x(log_nu + self.offset, self.u_lo, self.u_hi, self.f_lo, self.f_hi)
            b_on = np.clip(self.a_on * np.exp(-u), self.lo_on, self.hi_on)
            b_on = np.where(u == self.u_hi, self.lo_on, np.where(u == self.u_lo, self.hi_on, b_on))
            b[self.on] = b_on  # bracket ends exactly, not through exp(log(.))
        return b


# --------------------------------------------------------------------------- water-filling


@dataclass(frozen=True, eq=False)
class WaterfillResult:
    r"""Outcome of :func:`waterfill`.

    Attributes
    ----------
    bandwidth_hz : numpy.ndarray, shape (K,)
        :math:`b_k` in Hz (equal to ``b_min_hz`` when infeasible).
    nu : float
        Bandwidth price :math:`\nu` at the solution (``nan`` when no root search ran; the price
        of the unit-weight tie-break problem when ``spread_when_unweighted`` applied).
    iterations : int
        Evaluations of :math:`\sum_k b_k(\nu)` by the outer root search.
    converged : bool
        The outer stopping rule :math:`|\sum_k b_k(\nu) - B| \le \mathrm{tol}\,B` was met before
        the final exact rescaling (always ``True`` when no root search was needed).
    feasible : bool
        :math:`\sum_k b^{\min}_k \le B` and every :math:`b^{\min}_k` is finite.
    message : str
        Human-readable outcome.
    """

    bandwidth_hz: np.ndarray
    nu: float
    iterations: int
    converged: bool
    feasible: bool
    message: str


def waterfill(
    weights: ArrayLike,
    payload_bits: ArrayLike,
    power_w: ArrayLike,
    channel_gain: ArrayLike,
    noise_psd_w_per_hz: ArrayLike,
    b_min_hz: ArrayLike,
    total_bandwidth_hz: float,
    tol: float = 1e-10,
    spread_when_unweighted: bool = True,
) -> WaterfillResult:
    r"""Split :math:`B` Hz to minimise weighted upload energy above per-device minima.

    Parameters
    ----------
    weights : float or array_like, shape (K,)
        :math:`Q_k \ge 0` (Lyapunov energy-queue backlogs).
    payload_bits : float or array_like, shape (K,)
        Uplink payload :math:`S_k` in bits.
    power_w : float or array_like, shape (K,)
        Transmit power :math:`p_k` in W.
    channel_gain : float or array_like, shape (K,)
        Channel power gain :math:`h_k`.
    noise_psd_w_per_hz : float or array_like, shape (K,)
        Noise PSD :math:`N_0` in W/Hz.
    b_min_hz : float or array_like, shape (K,)
        Minimum bandwidths :math:`b^{\min}_k` in Hz (e.g. :func:`min_bandwidth_for_deadline`).
    total_bandwidth_hz : float
        :math:`B` in Hz, > 0.
    tol : float, default 1e-10
        Relative tolerance of the outer root search on :math:`\ln\nu` and of the bandwidth sum.
    spread_when_unweighted : bool, default True
        If no device has :math:`Q_k p_k S_k > 0`, every feasible split is optimal; ``True``
        breaks the tie by minimising the unweighted energy :math:`\sum_k E_k` (all
        :math:`Q_k := 1`), ``False`` returns :math:`b^{\min}` and leaves the rest unused.

    Returns
    -------
    WaterfillResult
        ``bandwidth_hz`` sums to :math:`B` exactly (up to rounding) with :math:`b_k \ge
        b^{\min}_k` whenever some device has positive weight; devices with
        :math:`Q_k = 0` get :math:`b^{\min}_k`. Infeasible instances return ``b_min_hz`` with
        ``feasible=False``: nothing is raised.

    Notes
    -----
    Problem (papers.md §1.6 step 2 [R]), convex because each :math:`E_k` is convex decreasing:

    .. math::
        \min_{b}\ \sum_k Q_k E_k(b_k) \ \ \text{s.t.}\ \ \sum_k b_k = B,\ \ b_k \ge b^{\min}_k,
        \qquad E_k(b) = \frac{p_k S_k}{b\log_2(1 + a_k/b)}.

    KKT: :math:`b_k = \max\{b^{\min}_k, \beta_k(\nu)\}` with :math:`\pi_k(\beta_k(\nu)) = \nu`
    (:func:`bandwidth_for_marginal_price`, inner solve) and :math:`\nu` the root of the
    decreasing function :math:`\sum_k b_k(\nu) - B` (outer solve: Brent's method on
    :math:`\ln\nu` in the bracket :math:`[\min_k \pi_k(u_k), \max_k \pi_k(b^{\min}_k)]`,
    :math:`u_k = B - \sum_{j\ne k} b^{\min}_j`). Stopping rule: Brent's bracket on
    :math:`\ln\nu` below ``tol``. The last rounding error :math:`B - \sum_k b_k` is then moved
    onto the weighted devices (in proportion to :math:`b_k - b^{\min}_k` when removing), so the
    sum is exactly :math:`B`.
    """
    w, a, lo, _ = _prepare(weights, payload_bits, power_w, channel_gain, noise_psd_w_per_hz,
                           b_min_hz, 0.0)
    total = float(total_bandwidth_hz)
    need = float(np.sum(lo))
    if not (np.all(np.isfinite(lo)) and np.all(lo >= 0) and need <= total * (1.0 + 1e-12)):
        return WaterfillResult(
            bandwidth_hz=lo.copy(), nu=math.nan, iterations=0, converged=False, feasible=False,
            message=f"infeasible: sum of minimum bandwidths {need:.6g} Hz exceeds "
                    f"B = {total:.6g} Hz (or one is infinite)",
        )
    if np.any((as_float_array(payload_bits) * as_float_array(power_w) > 0) & ~(a > 0)):
        return WaterfillResult(
            bandwidth_hz=lo.copy(), nu=math.nan, iterations=0, converged=False, feasible=False,
            message="infeasible: a device with a payload has zero channel gain (infinite energy)",
        )
    if not np.any(w > 0) and spread_when_unweighted:
        w = _prepare(1.0, payload_bits, power_w, channel_gain, noise_psd_w_per_hz, 0.0, 0.0)[0]
        w = np.broadcast_to(w, lo.shape)
    on = w > 0
    if not np.any(on) or need >= total:
        what = "no device has positive weight" if not np.any(on) else "minimum bandwidths fill B"
        return WaterfillResult(
            bandwidth_hz=lo.copy(), nu=math.nan, iterations=0, converged=True, feasible=True,
            message=f"{what}: every device gets its minimum bandwidth",
        )
    hi = np.maximum(total - (need - lo), lo)  # u_k: what is left if all others sit at b^min
    price_map = _PriceMap(w, a, lo, hi)
    calls = [0]

    def excess(log_nu: float) -> float:
        calls[0] += 1
        return float(np.sum(price_map(log_nu))) - total

    u_lo, u_hi = price_map.log_price_range()
    converged = True
    if u_hi - u_lo <= tol or excess(u_lo) <= 0.0:
        log_nu = u_lo
    elif excess(u_hi) >= 0.0:
        log_nu = u_hi
    else:
        log_nu, info = brentq(excess, u_lo, u_hi, xtol=tol, rtol=4 * np.finfo(float).eps,
                              maxiter=200, full_output=True, disp=False)
        converged = bool(info.converged)
    b = price_map(log_nu)
    residual = total - float(np.sum(b))
    converged &= abs(residual) <= tol * total
    if residual > 0:
        b[on] += residual * b[on] / np.sum(b[on])
    elif residual < 0:
        slack = np.where(on, b - lo, 0.0)
        b -= -residual * slack / np.sum(slack)
    return WaterfillResult(
        bandwidth_hz=b, nu=math.exp(log_nu), iterations=calls[0], converged=converged,
        feasible=True,
        message="converged" if converged else
        f"root search stopped with bandwidth residual {residual:.3g} Hz (corrected)",
    )
