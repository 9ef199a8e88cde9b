r"""Uplink rate models of the switching paradigm: rate, marginal energy price, deadline floor.

Paper 3 [wang2025switching]; its equations were not readable (papers.md §0), so this is the
**[R] reconstruction** of papers.md §3.3 and §3.5(b). Either rate model

.. math::
    R_k(b) = b\log_2\!\Big(1+\frac{p_kh_k}{I_k+bN_0}\Big)\ \ (\texttt{"shannon"})
    \qquad\text{or}\qquad R_k(b) = b\log_2(1+\theta_k)\ \ (\texttt{"fixed"})

is increasing and concave in :math:`b`, so the upload energy :math:`E_k(b) = p_kS_k/R_k(b)`
is convex and decreasing. :func:`marginal_price` is :math:`\pi_k = -Q_kE_k'`, which the inner
tier of Algorithm 1 (:mod:`airtune.allocation.switching.bandwidth_tiers`) sets equal to the price
:math:`\nu`; :func:`deadline_min_bandwidth_hz` is the floor :math:`b^{\min}_k`, the smallest
:math:`b` with :math:`S_k/R_k(b)\le\Delta_k` (Lambert W of
:func:`airtune.allocation.min_bandwidth.min_bandwidth_for_rate` when :math:`I_k=0`, a
vectorised bisection otherwise, closed form for the fixed rate). Vectorised over devices.
"""

from __future__ import annotations

import math
from typing import Literal, cast

import numpy as np
from numpy.typing import ArrayLike

from airtune.allocation.min_bandwidth import min_bandwidth_for_rate

__all__ = [
    "RateModel",
    "deadline_min_bandwidth_hz",
    "marginal_price",
    "rate_bps",
    "rate_and_slope",
]

RateModel = Literal["shannon", "fixed"]
_LN2 = math.log(2.0)
_SERIES = 1e-3  # below this SINR, ln(1+g) - g/(1+g) is summed as a series


def rate_and_slope(b: np.ndarray, p: np.ndarray, h: np.ndarray, n0: np.ndarray, i_w: np.ndarray, theta: np.ndarray,
                   model: str) -> tuple[np.ndarray, np.ndarray]:
    """R_k(b) in bit/s and R_k'(b) in bit/s/Hz (b > 0)."""
    if model == "fixed":
        c = np.log2(1.0 + theta)
        return b * c, np.broadcast_to(c, np.shape(b))
    noise = i_w + b * n0
    g = p * h / noise  # SINR
    lg = np.log1p(g)
    gs = np.minimum(g, _SERIES)
    series = gs**2 * (0.5 - gs * (2.0 / 3.0 - gs * (0.75 - gs * 0.8)))
    d = np.where(g < _SERIES, series, lg - g / (1.0 + g))  # ln(1+g) - g/(1+g)
    interf_share = np.divide(i_w, noise, out=np.zeros(np.shape(noise)), where=noise > 0)
    slope = (d + interf_share * g / (1.0 + g)) / _LN2
    return b * lg / _LN2, slope


def rate_bps(
    bandwidth_hz: ArrayLike,
    power_w: ArrayLike,
    channel_gain: ArrayLike,
    noise_psd_w_per_hz: ArrayLike,
    interference_w: ArrayLike = 0.0,
    rate_model: RateModel = "shannon",
    sinr_threshold: ArrayLike = 1.0,
) -> np.ndarray:
    r"""Uplink rate of either model (module docstring), bit/s, shape (K,).

    Parameters
    ----------
    bandwidth_hz, power_w, channel_gain, noise_psd_w_per_hz, interference_w
        :math:`b_k` (Hz), :math:`p_k` (W), :math:`h_k`, :math:`N_0` (W/Hz), :math:`I_k` (W).
    rate_model : {"shannon", "fixed"}
        Rate model.
    sinr_threshold : float or array_like, shape (K,)
        :math:`\theta_k` (linear) of the fixed-rate model.

    Returns
    -------
    numpy.ndarray, shape (K,)
        :math:`R_k(b_k)`; 0 where :math:`b_k = 0`.

    Notes
    -----
    .. math::
        R_k = b_k\log_2\!\Big(1+\frac{p_kh_k}{I_k+b_kN_0}\Big)\ \text{or}\ b_k\log_2(1+\theta_k)

    Source: papers.md §3.3 [R].
    """
    b = np.asarray(bandwidth_hz, dtype=float)
    safe = np.where(b > 0, b, 1.0)
    r, _ = rate_and_slope(safe, np.asarray(power_w, float), np.asarray(channel_gain, float),
                           np.asarray(noise_psd_w_per_hz, float), np.asarray(interference_w, float),
                           np.asarray(sinr_threshold, float), rate_model)
    return np.where(b > 0, r, 0.0)


def marginal_price(
    bandwidth_hz: ArrayLike,
    weights: ArrayLike,
    payload_bits: ArrayLike,
    power_w: ArrayLike,
    channel_gain: ArrayLike,
    noise_psd_w_per_hz: ArrayLike,
    interference_w: ArrayLike = 0.0,
    rate_model: RateModel = "shannon",
    sinr_threshold: ArrayLike = 1.0,
) -> np.ndarray:
    r"""Weighted marginal energy saving :math:`\pi_k(b) = -Q_k\,\mathrm dE_k/\mathrm db`.

    Parameters
    ----------
    bandwidth_hz : array_like, shape (K,)
        :math:`b_k > 0` in Hz.
    weights : array_like, shape (K,)
        :math:`Q_k \ge 0`.
    payload_bits : array_like, shape (K,)
        :math:`S_k` in bits.
    power_w, channel_gain, noise_psd_w_per_hz, interference_w, rate_model, sinr_threshold
        As in :func:`rate_bps`.

    Returns
    -------
    numpy.ndarray, shape (K,)
        :math:`\pi_k` in (weight x J/Hz), decreasing in :math:`b_k`.

    Notes
    -----
    With :math:`\gamma = p h/(I + bN_0)`:

    .. math::
        \pi_k = \frac{Q_k p_k S_k R_k'}{R_k^2},\quad
        R_k' = \frac1{\ln2}\Big[\ln(1+\gamma) - \frac{bN_0}{I+bN_0}\frac{\gamma}{1+\gamma}\Big]
        \ \text{(Shannon)},\quad R_k' = \log_2(1+\theta)\ \text{(fixed)}

    Source: papers.md §3.5(b) [R].
    """
    r, dr = rate_and_slope(np.asarray(bandwidth_hz, float), np.asarray(power_w, float),
                            np.asarray(channel_gain, float), np.asarray(noise_psd_w_per_hz, float),
                            np.asarray(interference_w, float), np.asarray(sinr_threshold, float),
                            rate_model)
    w = np.asarray(weights, float) * np.asarray(power_w, float) * np.asarray(payload_bits, float)
    return cast(np.ndarray, w * dr / r**2)


def deadline_min_bandwidth_hz(
    payload_bits: ArrayLike,
    time_budget_s: ArrayLike,
    power_w: ArrayLike,
    channel_gain: ArrayLike,
    noise_psd_w_per_hz: ArrayLike,
    interference_w: ArrayLike = 0.0,
    rate_model: RateModel = "shannon",
    sinr_threshold: ArrayLike = 1.0,
    total_bandwidth_hz: float | None = None,
) -> np.ndarray:
    r"""Smallest bandwidth that uploads :math:`S_k` bits within :math:`\Delta_k` seconds.

    Parameters
    ----------
    payload_bits : array_like, shape (K,)
        :math:`S_k` in bits.
    time_budget_s : array_like, shape (K,)
        :math:`\Delta_k` in s (time left for the upload).
    power_w, channel_gain, noise_psd_w_per_hz, interference_w, rate_model, sinr_threshold
        As in :func:`rate_bps`.
    total_bandwidth_hz : float, optional
        Used only to scale the bisection bracket when :math:`I_k > 0` (default :math:`10^{12}`).

    Returns
    -------
    numpy.ndarray, shape (K,)
        :math:`b^{\min}_k` in Hz; ``inf`` if unreachable (:math:`\Delta_k\le0`, or
        :math:`S_k/\Delta_k \ge \sup_b R_k(b) = p_kh_k/(N_0\ln2)`).

    Notes
    -----
    Shannon, :math:`I_k=0`: Lambert W (:func:`airtune.allocation.split_fed.waterfill.min_bandwidth_for_rate`).
    Shannon, :math:`I_k>0`: bisection on :math:`\ln b` for :math:`R_k(b)=S_k/\Delta_k`
    (:math:`R_k` increasing, concave). Fixed rate:

    .. math:: b^{\min}_k = \frac{S_k}{\Delta_k \log_2(1+\theta_k)}

    Source: papers.md §1.6 step 1 and §3.5(b) [R].
    """
    s, dt, p, h, n0, i_w, th = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (
        payload_bits, time_budget_s, power_w, channel_gain, noise_psd_w_per_hz, interference_w,
        sinr_threshold)))
    need = np.divide(s, dt, out=np.full(s.shape, np.inf), where=dt > 0)
    need = np.where(s <= 0, 0.0, need)
    if rate_model == "fixed":
        c = np.log2(1.0 + th)
        out = np.divide(need, c, out=np.full(s.shape, np.inf), where=c > 0)
        return np.where(need == 0, 0.0, out)
    out = np.asarray(min_bandwidth_for_rate(need, p, h, n0), dtype=float).copy()
    intf = (i_w > 0) & (need > 0) & np.isfinite(need) & (need * _LN2 * n0 < p * h)
    if np.any(intf):
        # bracket: noise-limited b_min (a lower bound) .. a value where R exceeds the need
        lo = np.maximum(out[intf], 1e-300)
        scale = 1e12 if total_bandwidth_hz is None else 1e6 * float(total_bandwidth_hz)
        hi = np.full(lo.shape, scale)
        args = (p[intf], h[intf], n0[intf], i_w[intf], th[intf], "shannon")
        grow = rate_and_slope(hi, *args)[0] < need[intf]
        for _ in range(200):  # expand where needed (rate tends to p h / (N0 ln 2) > need)
            if not grow.any():
                break
            hi = np.where(grow, hi * 1e3, hi)
            grow = rate_and_slope(hi, *args)[0] < need[intf]
        for _ in range(200):
            if np.all(np.log(hi / lo) <= 1e-13):
                break
            mid = np.sqrt(lo * hi)
            ok = rate_and_slope(mid, *args)[0] >= need[intf]
            hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
        out[intf] = hi
    out[(i_w > 0) & (need > 0) & ~intf] = np.inf
    return cast(np.ndarray, out)
