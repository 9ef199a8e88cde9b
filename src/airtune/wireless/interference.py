r"""Aggregate PPP interference under Rayleigh fading: an exact positive-stable law (pure numpy).

Interferers form a homogeneous Poisson point process of density :math:`\lambda_I` on the whole
plane, each transmitting at :math:`p_I` through the power-law gain :math:`c\,r^{-\alpha}` and
i.i.d. :math:`\mathrm{Exp}(1)` fading. The aggregate power at the base station,
:math:`I=\sum_j p_I g_j c\,r_j^{-\alpha}`, has the Laplace transform

.. math::
    \mathcal L_I(s) = \exp\!\big(-\lambda_I\pi\,\Gamma(1+\delta)\Gamma(1-\delta)\,(s\,p_I c)^{\delta}\big),
    \qquad \delta = 2/\alpha \in (0, 1),

so :math:`I = K_I X` with :math:`K_I = p_I c\,(\lambda_I\pi\Gamma(1+\delta)\Gamma(1-\delta))^{1/\delta}`
(:func:`interference_scale_w`) and :math:`X` the standard positive stable variable,
:math:`\mathbb E e^{-sX} = e^{-s^\delta}`. Sampling (:func:`sample_positive_stable`) uses
Kanter's representation [kanter1975stable]: with :math:`U\sim\mathcal U(0,\pi)`,
:math:`E\sim\mathrm{Exp}(1)`,

.. math::
    X = \Big(\frac{A(U)}{E}\Big)^{(1-\delta)/\delta},\qquad
    A(u) = \frac{\sin(\delta u)^{\delta/(1-\delta)}\,\sin((1-\delta)u)}{\sin(u)^{1/(1-\delta)}},

hence the CDF :math:`F(x) = \frac1\pi\int_0^\pi \exp(-A(u)\,x^{-\delta/(1-\delta)})\,du`
(:func:`positive_stable_cdf`, Gauss-Legendre) and its quantile (:func:`positive_stable_quantile`).

With :math:`\Pr[g\,p\,c\,d^{-\alpha} \ge \theta(I+bN_0)] = \mathcal L_I(\theta d^\alpha/(pc))
\,e^{-\theta d^\alpha bN_0/(pc)}` this reproduces the closed form of
:func:`airtune.wireless.outage.ppp_success_probability` (papers.md §3.3 [R]) exactly, so a
delivery drawn from a sampled :math:`I` and the realised fading is an event of exactly that
probability (tested against it and against an explicit PPP simulation).
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "interference_scale_w",
    "positive_stable_cdf",
    "positive_stable_quantile",
    "sample_interference_w",
    "sample_positive_stable",
    "stable_index",
]

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(256)
_U = 0.5 * math.pi * (_NODES + 1.0)          # nodes on (0, pi)
_W = 0.5 * _WEIGHTS                           # weights of (1/pi) * integral over (0, pi)


def stable_index(path_loss_exponent: float) -> float:
    r""":math:`\delta = 2/\alpha`; requires :math:`\alpha > 2` (finite interference)."""
    if not path_loss_exponent > 2:
        raise ValueError(f"path_loss_exponent = {path_loss_exponent} must exceed 2 for PPP interference")
    return 2.0 / float(path_loss_exponent)


def interference_scale_w(density_per_m2: float, interferer_power_w: float, path_gain_at_1m: float,
                         path_loss_exponent: float) -> float:
    r""":math:`K_I` in W such that :math:`I = K_I X`, :math:`\mathbb E e^{-sX}=e^{-s^\delta}` (module docstring).

    0 when there are no interferers (``density_per_m2 = 0`` or ``interferer_power_w = 0``).
    """
    delta = stable_index(path_loss_exponent)
    if density_per_m2 <= 0 or interferer_power_w <= 0:
        return 0.0
    lam = density_per_m2 * math.pi * math.gamma(1 + delta) * math.gamma(1 - delta)
    return float(interferer_power_w * path_gain_at_1m * lam ** (1.0 / delta))


def _a(u: np.ndarray, delta: float) -> np.ndarray:
    """Zolotarev's function A(u) of the module docstring, for u in (0, pi)."""
    return cast(np.ndarray, np.sin(delta * u) ** (delta / (1 - delta)) * np.sin((1 - delta) * u)
                / np.sin(u) ** (1 / (1 - delta)))


def sample_positive_stable(rng: np.random.Generator, delta: float, size: int | tuple[int, ...]) -> np.ndarray:
    r"""Draws of :math:`X`, :math:`\mathbb E e^{-sX}=e^{-s^\delta}`, by Kanter's method (module docstring)."""
    if not 0 < delta < 1:
        raise ValueError(f"delta = {delta} must lie in (0, 1)")
    u = rng.uniform(0.0, math.pi, size)
    e = rng.exponential(1.0, size)
    return (_a(u, delta) / e) ** ((1 - delta) / delta)


def sample_interference_w(rng: np.random.Generator, scale_w: float, delta: float,
                          size: int | tuple[int, ...]) -> np.ndarray:
    """Aggregate PPP interference power in W (0 without interferers); one draw per entry of ``size``."""
    x = sample_positive_stable(rng, delta, size)
    return scale_w * x


def positive_stable_cdf(x: ArrayLike, delta: float) -> np.ndarray:
    r""":math:`F(x)=\Pr[X\le x]` (module docstring); 0 for :math:`x\le0`. Shape of ``x``."""
    x = np.asarray(x, dtype=float)
    out = np.zeros(x.shape)
    pos = x > 0
    if np.any(pos):
        y = x[pos] ** (-delta / (1 - delta))                                 # (n,)
        a = _a(_U, delta)                                                     # (256,)
        out[pos] = np.exp(-np.multiply.outer(y, a)) @ _W                     # (n,)
    return np.clip(out, 0.0, 1.0)


def positive_stable_quantile(prob: float, delta: float) -> float:
    """The :math:`x` with :math:`F(x)=` ``prob`` (``0 < prob < 1``), by bisection on :math:`\\log x`."""
    if not 0 < prob < 1:
        raise ValueError(f"prob = {prob} must lie in (0, 1)")
    lo, hi = -50.0, 50.0                          # log x; F(e^-50) ~ 0, F(e^50) ~ 1 for delta in (0, 1)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if positive_stable_cdf(math.exp(mid), delta) < prob:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13:
            break
    return math.exp(0.5 * (lo + hi))
