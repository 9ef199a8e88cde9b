r"""PPP outage model: SINR threshold, success and outage probability, delivery sampling.

An upload at a fixed rate :math:`R_k` on :math:`b_k` Hz arrives when its SINR reaches the
threshold :math:`\theta_k = 2^{R_k/b_k} - 1`; with Rayleigh fading and interferers forming a
homogeneous Poisson point process the success probability has a closed form. Pure numpy,
vectorised over devices like :mod:`airtune.wireless.channel` (per-device arguments of shape
``(K,)`` or scalars); random functions take an explicit ``numpy.random.Generator``. The
power-law gain that matches the log-distance path loss comes from
:func:`~airtune.wireless.channel.path_gain_at_1m_from_db` and
:func:`~airtune.wireless.channel.path_loss_exponent_from_slope`.

Source: papers.md §3.3 [R] (Rayleigh + PPP success probability, our reconstruction checked by
Monte Carlo in ``tests/wireless``).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "outage_probability",
    "ppp_success_probability",
    "sample_delivery",
    "sinr_threshold_for_rate",
]


def sinr_threshold_for_rate(rate_bps: ArrayLike, bandwidth_hz: ArrayLike) -> np.ndarray:
    r"""SINR threshold :math:`\theta` that carries ``rate_bps`` at fixed rate in ``bandwidth_hz``.

    Parameters
    ----------
    rate_bps : float or array_like, shape (K,)
        Target rate in bit/s, >= 0.
    bandwidth_hz : float or array_like, shape (K,)
        Bandwidth in Hz; where 0 the threshold is ``inf`` (0 for a zero rate).

    Returns
    -------
    numpy.ndarray, shape (K,)
        Linear SINR threshold.

    Notes
    -----
    .. math:: \theta_k = 2^{R_k / b_k} - 1

    Source: papers.md §3.3 [R] (fixed-rate transmission at threshold).
    """
    r, b = np.broadcast_arrays(np.asarray(rate_bps, float), np.asarray(bandwidth_hz, float))
    out = np.where(r > 0, np.inf, 0.0)
    spectral_eff = np.divide(r, b, out=np.zeros(r.shape), where=b > 0)
    with np.errstate(over="ignore"):
        np.subtract(np.exp2(spectral_eff), 1.0, out=out, where=b > 0)
    return out


def ppp_success_probability(
    distance_m: ArrayLike,
    power_w: ArrayLike,
    bandwidth_hz: ArrayLike,
    noise_psd_w_per_hz: float,
    sinr_threshold: ArrayLike,
    path_loss_exponent: float,
    path_gain_at_1m: float,
    interferer_density_per_m2: float,
    interferer_power_w: float,
) -> np.ndarray:
    r"""Success probability :math:`\Pr[\mathrm{SINR}_k \ge \theta]` (Rayleigh fading, PPP).

    The link and every interferer use the power-law gain :math:`c\,d^{-\alpha}` (use
    :func:`path_gain_at_1m_from_db` and :func:`path_loss_exponent_from_slope` to match
    :func:`path_gain`), with i.i.d. :math:`\mathrm{Exp}(1)` fading; interferers form a
    homogeneous Poisson point process of density :math:`\lambda_I` on the whole plane.

    Parameters
    ----------
    distance_m : float or array_like, shape (K,)
        Link distance :math:`d_k` in m, > 0.
    power_w : float or array_like, shape (K,)
        Transmit power :math:`p_k` in W; the probability is 0 where it is 0.
    bandwidth_hz : float or array_like, shape (K,)
        Bandwidth :math:`b_k` in Hz (enters through the noise power :math:`b_k N_0`).
    noise_psd_w_per_hz : float
        Noise power spectral density :math:`N_0` in W/Hz.
    sinr_threshold : float or array_like, shape (K,)
        Linear SINR threshold :math:`\theta` (e.g. from :func:`sinr_threshold_for_rate`).
    path_loss_exponent : float
        :math:`\alpha > 2` (the interference sum diverges otherwise).
    path_gain_at_1m : float
        :math:`c`, power gain at 1 m.
    interferer_density_per_m2 : float
        PPP density :math:`\lambda_I` in m^-2, >= 0.
    interferer_power_w : float
        Interferer transmit power :math:`p_I` in W, >= 0.

    Returns
    -------
    numpy.ndarray, shape (K,)
        Success probability in [0, 1].

    Raises
    ------
    ValueError
        If ``path_loss_exponent <= 2``.

    Notes
    -----
    .. math::
        \Pr[\mathrm{SINR}_k \ge \theta] =
        \exp\!\Big(-\frac{\theta d_k^{\alpha} b_k N_0}{p_k c}\Big)\,
        \exp\!\Big(-\lambda_I \pi d_k^2 \theta^{2/\alpha}
        \big(\tfrac{p_I}{p_k}\big)^{2/\alpha}
        \Gamma\big(1+\tfrac2\alpha\big)\Gamma\big(1-\tfrac2\alpha\big)\Big)

    Source: papers.md §3.3 [R] (our reconstruction; checked by Monte Carlo in
    ``tests/wireless/test_ppp_monte_carlo.py``).
    """
    alpha = float(path_loss_exponent)
    if not alpha > 2.0:
        raise ValueError(
            f"path_loss_exponent={path_loss_exponent} must be > 2 for PPP interference "
            "to be finite; use e.g. path_loss_exponent_from_slope(37.6) = 3.76"
        )
    d, p, b, theta = np.broadcast_arrays(
        *(np.asarray(x, dtype=float) for x in (distance_m, power_w, bandwidth_hz, sinr_threshold))
    )
    delta = 2.0 / alpha
    gamma_prod = math.gamma(1.0 + delta) * math.gamma(1.0 - delta)
    on = p > 0
    noise_exponent = np.divide(
        theta * d**alpha * b * noise_psd_w_per_hz, p * path_gain_at_1m,
        out=np.zeros(d.shape), where=on,
    )
    power_ratio = np.divide(interferer_power_w, p, out=np.zeros(d.shape), where=on)
    interference_exponent = (
        interferer_density_per_m2 * math.pi * d**2 * theta**delta * power_ratio**delta * gamma_prod
    )
    success = np.exp(-noise_exponent - interference_exponent)
    return np.where(on, success, 0.0)


def outage_probability(
    distance_m: ArrayLike,
    power_w: ArrayLike,
    bandwidth_hz: ArrayLike,
    noise_psd_w_per_hz: float,
    sinr_threshold: ArrayLike,
    path_loss_exponent: float,
    path_gain_at_1m: float,
    interferer_density_per_m2: float,
    interferer_power_w: float,
) -> np.ndarray:
    r"""Outage (packet-error) probability :math:`q_k`: one minus :func:`ppp_success_probability`.

    Parameters are those of :func:`ppp_success_probability`.

    Returns
    -------
    numpy.ndarray, shape (K,)
        Outage probability in [0, 1].

    Notes
    -----
    .. math:: q_k = 1 - \Pr[\mathrm{SINR}_k \ge \theta]

    Source: papers.md §3.3 [R].
    """
    return 1.0 - ppp_success_probability(
        distance_m, power_w, bandwidth_hz, noise_psd_w_per_hz, sinr_threshold,
        path_loss_exponent, path_gain_at_1m, interferer_density_per_m2, interferer_power_w,
    )


def sample_delivery(rng: np.random.Generator, success_probability: ArrayLike) -> np.ndarray:
    r"""Draw which uploads arrive, independently per device.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness (one uniform per device).
    success_probability : array_like, shape (K,)
        Per-device success probability in [0, 1].

    Returns
    -------
    numpy.ndarray of bool, shape (K,)
        ``True`` where the upload is delivered.

    Raises
    ------
    ValueError
        If a probability lies outside [0, 1] or is nan.

    Notes
    -----
    .. math:: \delta_k = \mathbb 1[U_k < 1 - q_k],\qquad U_k \sim \mathcal U[0, 1)

    Source: papers.md §3.3 [R].
    """
    prob = np.asarray(success_probability, dtype=float)
    if not np.all((prob >= 0.0) & (prob <= 1.0)):
        raise ValueError("success_probability must lie in [0, 1] (got values outside or nan)")
    return rng.random(prob.shape) < prob
