r"""Power subproblem of the switching paradigm: data, PPP outage, objective and deadline floor.

Paper 3 [wang2025switching] solves its power subproblem "by interior point"; its equations were
not readable (papers.md §0), so this is the **[R] reconstruction** of papers.md §3.5(c). For
fixed module choice and bandwidth, each device :math:`k` solves

.. math::
    \min_{p_k\in[p^{\min}_k,\,p^{\max}_k]}\ f_k(p_k) = V\,G_k\big(q_k(p_k)\big)
        + Q_k\,\frac{p_k S_k}{R_k(p_k)},

with the PPP outage (Rayleigh fading, interferers of density :math:`\lambda_I` and power
:math:`p_I`; :func:`airtune.wireless.outage.ppp_success_probability`, papers.md §3.3 [R])

.. math::
    q_k(p) = 1 - \exp\!\Big(-\frac{\theta d_k^\alpha b_k N_0}{c\,p}\Big)
        \exp\!\Big(-\lambda_I\pi d_k^2\theta^{2/\alpha}\big(\tfrac{p_I}{p}\big)^{2/\alpha}
        \Gamma(1+\tfrac2\alpha)\Gamma(1-\tfrac2\alpha)\Big),

the rate :math:`R_k = b_k\log_2(1+\theta_k)` (``"fixed"``, default: transmission at the
threshold, so energy is linear in :math:`p`) or
:math:`R_k = b_k\log_2(1+p h_k/(I_k+b_kN_0))` (``"shannon"``), a user risk function
:math:`G_k` of the outage (default :math:`G_k(q)=w_kq`) and the deadline floor
:math:`p^{\min}_k` (Shannon model: :math:`p\ge(2^{S_k/(\Delta_kb_k)}-1)(I_k+b_kN_0)/h_k`).

The solvers (golden section, SciPy reference) are in :mod:`airtune.allocation.switching.power`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from airtune.wireless.channel import shannon_rate_bps
from airtune.wireless.outage import ppp_success_probability

__all__ = [
    "PowerProblem",
    "deadline_min_power_w",
    "outage",
    "power_objective",
]


def _vec(val: ArrayLike, k_dev: int) -> np.ndarray:
    arr = np.array(np.broadcast_to(np.asarray(val, dtype=float), (k_dev,)))
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class PowerProblem:
    r"""Data of the per-round power subproblem (arrays broadcast to shape (K,)).

    Attributes
    ----------
    payload_bits : array_like, shape (K,)
        :math:`S_k` in bits (module payload).
    bandwidth_hz : array_like, shape (K,)
        :math:`b_k` in Hz (fixed by the bandwidth subproblem).
    distance_m : array_like, shape (K,)
        :math:`d_k` in m.
    energy_weight : array_like, shape (K,)
        :math:`Q_k \ge 0` (energy virtual queue).
    v : float
        Lyapunov trade-off :math:`V \ge 0`.
    max_power_w : array_like, shape (K,)
        :math:`p^{\max}_k` in W.
    noise_psd_w_per_hz : float
        :math:`N_0` in W/Hz.
    sinr_threshold : array_like, shape (K,)
        :math:`\theta_k` (linear).
    path_loss_exponent : float
        :math:`\alpha > 2`.
    path_gain_at_1m : float
        :math:`c` (power-law gain :math:`c\,d^{-\alpha}`).
    interferer_density_per_m2 : float
        :math:`\lambda_I` in m^-2.
    interferer_power_w : float
        :math:`p_I` in W.
    min_power_w : array_like, shape (K,), default 0
        Lower limit in W (the deadline floor is added on top).
    risk_weight : array_like, shape (K,), default 1
        :math:`w_k \ge 0` of the default :math:`G_k(q) = w_k q`.
    risk_fn : callable, optional
        :math:`G`: takes outages of shape (K, n) and returns shape (K, n) (row :math:`k`
        belongs to device :math:`k`); replaces the default.
    rate_model : {"fixed", "shannon"}, default "fixed"
        Rate model (module docstring).
    channel_gain : array_like, shape (K,), default 1
        :math:`h_k` (Shannon model only).
    interference_w : array_like, shape (K,), default 0
        :math:`I_k` in W (Shannon model only).
    time_budget_s : array_like, shape (K,), optional
        Upload deadline :math:`\Delta_k` in s.
    """

    payload_bits: ArrayLike
    bandwidth_hz: ArrayLike
    distance_m: ArrayLike
    energy_weight: ArrayLike
    v: float
    max_power_w: ArrayLike
    noise_psd_w_per_hz: float
    sinr_threshold: ArrayLike
    path_loss_exponent: float
    path_gain_at_1m: float
    interferer_density_per_m2: float
    interferer_power_w: float
    min_power_w: ArrayLike = 0.0
    risk_weight: ArrayLike = 1.0
    risk_fn: Callable[[np.ndarray], np.ndarray] | None = None
    rate_model: Literal["fixed", "shannon"] = "fixed"
    channel_gain: ArrayLike = 1.0
    interference_w: ArrayLike = 0.0
    time_budget_s: ArrayLike | None = None
    num_devices: int = field(init=False)

    def __post_init__(self) -> None:
        shape = np.broadcast(*(np.asarray(getattr(self, n)) for n in (
            "payload_bits", "bandwidth_hz", "distance_m", "energy_weight"))).shape
        if len(shape) > 1:
            raise ValueError(f"per-device arrays must have shape (K,), got {shape}")
        k_dev = int(shape[0]) if shape else 1
        object.__setattr__(self, "num_devices", k_dev)
        for name in ("payload_bits", "bandwidth_hz", "distance_m", "energy_weight", "max_power_w",
                     "sinr_threshold", "min_power_w", "risk_weight", "channel_gain",
                     "interference_w"):
            object.__setattr__(self, name, _vec(getattr(self, name), k_dev))
        if self.time_budget_s is not None:
            object.__setattr__(self, "time_budget_s", _vec(self.time_budget_s, k_dev))
        if self.rate_model not in ("fixed", "shannon"):
            raise ValueError(f"rate_model={self.rate_model!r}: use 'fixed' or 'shannon'")
        if np.any(np.asarray(self.max_power_w) <= 0):
            raise ValueError("max_power_w must be > 0")

    @property
    def active(self) -> np.ndarray:
        """Devices that upload: payload and bandwidth both positive, shape (K,)."""
        return (np.asarray(self.payload_bits) > 0) & (np.asarray(self.bandwidth_hz) > 0)


def outage(problem: PowerProblem, power_w: ArrayLike) -> np.ndarray:
    r"""PPP outage :math:`q_k(p)` for powers of shape (K,) or (K, n).

    Parameters
    ----------
    problem : PowerProblem
        Link data.
    power_w : array_like, shape (K,) or (K, n)
        Candidate powers in W.

    Returns
    -------
    numpy.ndarray, same shape as ``power_w``
        :math:`q_k(p) = 1 - \Pr[\mathrm{SINR}_k\ge\theta_k]` (module docstring).

    Notes
    -----
    Source: papers.md §3.3 [R] (:func:`airtune.wireless.channel.ppp_success_probability`).
    """
    p = np.asarray(power_w, dtype=float)
    col = (slice(None),) + (None,) * (p.ndim - 1)
    succ = ppp_success_probability(
        np.asarray(problem.distance_m)[col], p, np.asarray(problem.bandwidth_hz)[col], problem.noise_psd_w_per_hz,
        np.asarray(problem.sinr_threshold)[col], problem.path_loss_exponent, problem.path_gain_at_1m,
        problem.interferer_density_per_m2, problem.interferer_power_w,
    )
    return 1.0 - succ


def _rate(problem: PowerProblem, p: np.ndarray) -> np.ndarray:
    col = (slice(None),) + (None,) * (p.ndim - 1)
    b = np.asarray(problem.bandwidth_hz)[col]
    if problem.rate_model == "fixed":
        return np.broadcast_to(b * np.log2(1.0 + np.asarray(problem.sinr_threshold)[col]), p.shape)
    return shannon_rate_bps(b, p, np.asarray(problem.channel_gain)[col], problem.noise_psd_w_per_hz,
                            np.asarray(problem.interference_w)[col])


def power_objective(problem: PowerProblem, power_w: ArrayLike) -> np.ndarray:
    r"""Per-device objective :math:`f_k(p)` for powers of shape (K,) or (K, n).

    Parameters
    ----------
    problem : PowerProblem
        Subproblem data.
    power_w : array_like, shape (K,) or (K, n)
        Candidate powers in W.

    Returns
    -------
    numpy.ndarray, same shape as ``power_w``
        :math:`f_k(p) = V G_k(q_k(p)) + Q_k p S_k / R_k(p)`; 0 for inactive devices;
        ``inf`` where the rate is 0 for an active device.

    Notes
    -----
    .. math:: f_k(p) = V\,G_k(q_k(p)) + Q_k\,p\,S_k / R_k(p)

    Source: papers.md §3.5(c) [R].
    """
    p = np.asarray(power_w, dtype=float)
    two_d = p.reshape(p.shape[0], -1)  # (K, n)
    q = outage(problem, two_d)
    col = (slice(None), None)
    s_col, q_col = np.asarray(problem.payload_bits)[col], np.asarray(problem.energy_weight)[col]
    if problem.risk_fn is None:
        risk = np.asarray(problem.risk_weight)[col] * q
    else:
        risk = np.asarray(problem.risk_fn(q), dtype=float)
    rate = _rate(problem, two_d)
    energy = np.divide(two_d * s_col, rate, out=np.full(two_d.shape, np.inf),
                       where=rate > 0)
    energy = np.where(two_d * s_col > 0, energy, 0.0)
    with np.errstate(invalid="ignore"):
        comm = np.where(q_col > 0, q_col * energy, 0.0)
    f = float(problem.v) * risk + comm
    return np.where(problem.active[col], f, 0.0).reshape(p.shape)


def deadline_min_power_w(problem: PowerProblem) -> tuple[np.ndarray, np.ndarray]:
    r"""Lower power limit from the deadline, and whether the deadline can be met at all.

    Parameters
    ----------
    problem : PowerProblem
        Subproblem data.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray of bool), shape (K,) each
        :math:`p^{\min}_k` in W (at least ``min_power_w``) and the per-device flag
        "deadline reachable within :math:`p^{\max}_k`".

    Notes
    -----
    .. math::
        \text{shannon: } p^{\min}_k = \big(2^{S_k/(\Delta_k b_k)} - 1\big)\frac{I_k + b_kN_0}{h_k};
        \qquad \text{fixed: } p^{\min}_k = p_{\rm lo},\ \text{reachable iff }
        b_k\log_2(1+\theta_k)\Delta_k \ge S_k

    Source: papers.md §3.5(c) [R].
    """
    lo = np.asarray(problem.min_power_w).copy()
    p_max = np.asarray(problem.max_power_w)
    ok = np.ones(problem.num_devices, dtype=bool)
    if problem.time_budget_s is None:
        return lo, ok & (lo <= p_max)
    dt, s, b = (np.asarray(v) for v in (problem.time_budget_s, problem.payload_bits, problem.bandwidth_hz))
    act = problem.active
    if problem.rate_model == "fixed":
        ok = ~act | (b * np.log2(1.0 + np.asarray(problem.sinr_threshold)) * dt >= s)
        return lo, ok & (lo <= p_max)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        need = np.where(act & (dt > 0), np.exp2(s / (b * dt)) - 1.0, np.inf)
        noise_w = np.asarray(problem.interference_w) + b * problem.noise_psd_w_per_hz
        p_req = need * noise_w / np.asarray(problem.channel_gain)
    p_req = np.where(act, p_req, 0.0)
    p_req = np.where(np.isnan(p_req), np.inf, p_req)
    lo = np.maximum(lo, p_req)
    return lo, lo <= p_max
