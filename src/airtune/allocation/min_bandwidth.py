r"""Minimum bandwidth of an FDMA uplink in closed form (lower branch of Lambert W, pure numpy).

The uplink rate of device :math:`k` on bandwidth :math:`b_k` is the Shannon rate

.. math:: r_k(b_k) = b_k \log_2\!\Big(1 + \frac{a_k}{b_k}\Big),\qquad a_k = \frac{p_k h_k}{N_0}

(:func:`snr_bandwidth_hz`; :math:`a_k` in Hz: the bandwidth at which the SNR would be 1),
increasing and concave in :math:`b_k` with :math:`r_k(\infty) = a_k/\ln 2`. The smallest
:math:`b_k` with :math:`r_k(b_k) \ge R_k` (:func:`min_bandwidth_for_rate`,
:func:`min_bandwidth_from_snr_hz`), or that uploads :math:`S_k` bits within :math:`\Delta_k`
seconds (:func:`min_bandwidth_for_deadline`), is the deadline floor of the water-filling in
:mod:`airtune.allocation.split_fed.waterfill` and the inner kernel of the TSFA and switching bandwidth
solvers.

Source: papers.md §1.6 step 1 [R] (Lambert-W minimum bandwidth): our reconstruction of
[wang2025sfl], not the paper's own equation. Everything is vectorised over devices (shape
``(K,)``); no Python loop over devices.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "min_bandwidth_for_deadline",
    "min_bandwidth_for_rate",
    "min_bandwidth_from_snr_hz",
    "snr_bandwidth_hz",
    "LN2",
    "as_float_array",
]

LN2 = math.log(2.0)


def as_float_array(x: ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype=float)


def snr_bandwidth_hz(
    power_w: ArrayLike, channel_gain: ArrayLike, noise_psd_w_per_hz: ArrayLike
) -> np.ndarray:
    r"""The SNR-bandwidth :math:`a_k = p_k h_k / N_0` in Hz.

    Parameters
    ----------
    power_w : float or array_like, shape (K,)
        Transmit power :math:`p_k` in W, >= 0.
    channel_gain : float or array_like, shape (K,)
        Channel power gain :math:`h_k`, dimensionless, >= 0.
    noise_psd_w_per_hz : float or array_like, shape (K,)
        Noise power spectral density :math:`N_0` in W/Hz, > 0.

    Returns
    -------
    numpy.ndarray, shape (K,)
        :math:`a_k` in Hz; the rate on :math:`b` Hz is :math:`b \log_2(1 + a_k / b)`.

    Notes
    -----
    .. math:: a_k = \frac{p_k h_k}{N_0}

    Source: papers.md §1.6 step 1 [R].
    """
    return cast(np.ndarray, as_float_array(power_w) * as_float_array(channel_gain) / as_float_array(noise_psd_w_per_hz))


# --------------------------------------------------------------------------- minimum bandwidth


def min_bandwidth_for_rate(
    rate_bps: ArrayLike,
    power_w: ArrayLike,
    channel_gain: ArrayLike,
    noise_psd_w_per_hz: ArrayLike,
) -> np.ndarray:
    r"""Smallest bandwidth that carries a rate: :math:`\min\{b : b\log_2(1 + a/b) \ge R\}`.

    Parameters
    ----------
    rate_bps : float or array_like, shape (K,)
        Required rate :math:`R_k` in bit/s, >= 0.
    power_w : float or array_like, shape (K,)
        Transmit power :math:`p_k` in W.
    channel_gain : float or array_like, shape (K,)
        Channel power gain :math:`h_k`.
    noise_psd_w_per_hz : float or array_like, shape (K,)
        Noise power spectral density :math:`N_0` in W/Hz.

    Returns
    -------
    numpy.ndarray, shape (K,)
        :math:`b^{\min}_k` in Hz: 0 where :math:`R_k = 0`, ``inf`` where no bandwidth suffices
        (:math:`c_k \ge 1`, i.e. :math:`R_k \ge a_k/\ln 2`, the infinite-bandwidth capacity).

    Notes
    -----
    With :math:`a = p h / N_0` and :math:`c = R \ln 2 / a`, substituting :math:`y = 1 + a/b`
    turns :math:`b \log_2(1 + a/b) = R` into :math:`\ln y = c(y - 1)`, whose root
    :math:`y > 1` (it exists iff :math:`c < 1`) is on the lower Lambert-W branch:

    .. math::
        y = -\frac{W_{-1}\!\big(-c\,e^{-c}\big)}{c},\qquad b^{\min} = \frac{a}{y - 1}.

    The branch is evaluated in real arithmetic by :func:`min_bandwidth_from_snr_hz`.
    Source: papers.md §1.6 step 1 [R] (checked numerically there and in the tests).
    """
    return min_bandwidth_from_snr_hz(rate_bps, snr_bandwidth_hz(power_w, channel_gain, noise_psd_w_per_hz))


def min_bandwidth_from_snr_hz(rate_bps: ArrayLike, snr_hz: ArrayLike) -> np.ndarray:
    r""":func:`min_bandwidth_for_rate` given :math:`a = p h / N_0` (Hz) directly.

    With :math:`c = R\ln 2 / a` (feasible iff :math:`c < 1`), :math:`x = a/b = y - 1` is the
    positive root of :math:`\ln(1 + x) = c x`, i.e. the :math:`W_{-1}` branch above. It is
    evaluated in real arithmetic by Newton from :math:`x_0 = 2\ln(1/c)/c`, an upper bound of the
    root (:math:`1 - c^2 \ge 2c\ln(1/c)`); :math:`\ln(1+x) - cx` is concave, so the iterates
    decrease monotonically to the root (6 steps to machine precision for
    :math:`10^{-14} \le c \le 1 - 10^{-7}`; iterated to convergence, at most 60 steps). This
    keeps full precision at the branch point :math:`c \to 1`, where scipy's complex
    ``lambertw`` loses digits, and is about 5x faster on large arrays.

    Returns 0 where the rate is 0 and ``inf`` where it is unreachable (:math:`c \ge 1`,
    :math:`a = 0`, or an infinite rate). Source: papers.md §1.6 step 1 [R].
    """
    rate, a = np.broadcast_arrays(as_float_array(rate_bps), as_float_array(snr_hz))
    out = np.where(rate > 0, np.inf, 0.0)
    ok = (rate > 0) & (a > 0) & np.isfinite(rate)
    c = np.zeros(rate.shape)
    np.divide(rate * LN2, a, out=c, where=ok)
    ok &= c < 1.0
    if not np.any(ok):
        return out
    cc = c[ok]
    x = -2.0 * np.log(cc) / cc  # >= root
    for _ in range(60):
        step = (np.log1p(x) - cc * x) / (1.0 / (1.0 + x) - cc)
        x = x - step
        if np.all(np.abs(step) <= 4.0 * np.finfo(float).eps * x):
            break
    out[ok] = a[ok] / x
    return out


def min_bandwidth_for_deadline(
    payload_bits: ArrayLike,
    time_budget_s: ArrayLike,
    power_w: ArrayLike,
    channel_gain: ArrayLike,
    noise_psd_w_per_hz: ArrayLike,
) -> np.ndarray:
    r"""Smallest bandwidth that uploads :math:`S_k` bits within :math:`\Delta_k` seconds.

    Parameters
    ----------
    payload_bits : float or array_like, shape (K,)
        Uplink payload :math:`S_k` in bits, >= 0.
    time_budget_s : float or array_like, shape (K,)
        Time left for the upload :math:`\Delta_k` in s (deadline minus compute and downlink).
    power_w, channel_gain, noise_psd_w_per_hz
        As in :func:`min_bandwidth_for_rate`.

    Returns
    -------
    numpy.ndarray, shape (K,)
        :math:`b^{\min}_k` in Hz: ``inf`` where :math:`\Delta_k \le 0` or the rate
        :math:`S_k/\Delta_k` is unreachable; else 0 where :math:`S_k = 0`.

    Notes
    -----
    .. math:: R_k = \frac{S_k}{\Delta_k},\qquad b^{\min}_k = \text{min\_bandwidth\_for\_rate}(R_k)

    Source: papers.md §1.6 step 1 [R].
    """
    s, dt = np.broadcast_arrays(as_float_array(payload_bits), as_float_array(time_budget_s))
    rate = np.zeros(s.shape)
    np.divide(s, dt, out=rate, where=dt > 0)
    b = min_bandwidth_for_rate(rate, power_w, channel_gain, noise_psd_w_per_hz)
    b = cast(np.ndarray, np.broadcast_to(b, s.shape).copy())
    b[~(dt > 0)] = np.inf
    return b
