r"""Theorem-1-shaped risk-gap bound of the switching paradigm: a per-module SGD recursion.

The seed text (arXiv 2509.19306 §III, Appendix A; symbols lost) proves Theorem 1 under
Assumption 1 (:math:`\mu`-strong convexity, Lipschitz), Assumption 2 (twice differentiable:
second-order Taylor, eq. 24, and the Polyak-Łojasiewicz inequality, eq. 30) and Assumption 3
(a bound on the local gradients, eq. 27, after [10] = Chen et al.). Its prose: the bound "is
correlated with the impact of model switching in terms of :math:`x`, transmission
unreliability in terms of :math:`q`, data heterogeneity of UE-specific tasks, and the impact
of foundation models", and "the convergence rate ... depends on channel quality and model
switching". **[R] our reconstruction** of those terms, for module :math:`m` (one recursion per
module, because eq. 1 updates each module from its own subscribers):

.. math::
    G_m(t+1) = \underbrace{\Big(1-\frac{\mu}{L}+\frac{4\mu\zeta_1}{L}(1-\Phi_m)\Big)}_{A_m(x,q)}G_m(t)
        + \underbrace{\sum_k\frac{D_k}{D}\big(1-x_{k,m}s_{k}\big)\big(c_2 + c_{\rm het}\,\delta_k^2\big)}_{B_m(x,q,\delta)},
    \qquad \Phi_m=\sum_k\frac{D_k}{D}x_{k,m}s_k,

with :math:`s_k = 1-q_k` (outage), :math:`D=\sum_kD_k` over all :math:`K` devices (every module
serves the whole downstream task), :math:`c_2=2\zeta_2/L` (Assumption 3's noise floor) and
:math:`\delta_k` the device's measured dissimilarity (``DissimilarityHint``). This is Chen et al.'s
recursion (TWC 2021, Theorem 1: :math:`A = 1-\mu/L+4\mu\zeta_1/(LD)\sum_kD_k(1-a_k+a_kq_k)`)
per module. **Our choices**: Assumption 3 per device, :math:`\|\nabla f_k\|^2\le\zeta_1\|\nabla F\|^2
+\zeta_2+\tfrac L2c_{\rm het}\delta_k^2`, so missing a dissimilar device costs more (the heterogeneity
term); the contraction needs :math:`\zeta_1<1/4` (then :math:`A_m<1` for every :math:`x`).

The planner optimises this bound as stated (linear in :math:`x` and :math:`s`). The state it
carries, :math:`G_m(t)`, follows the deliveries that happened: a module no device delivered to
gets no gradient (eq. 1) and keeps its parameters, so its gap stays :math:`G_m(t)` (**our
choice**: Chen et al.'s recursion at :math:`\Phi_m=0` would still contract, a looseness of the
bound, not training). :func:`module_gap_step` with ``empty_keeps=True`` writes both cases as
:math:`\pi_mG_m+(1-\pi_m)(A_mG_m+B_m)`, :math:`\pi_m=\prod_k(1-x_{k,m}s_k)`, exact for
:math:`s_k\in\{0,1\}`. We also tried planning with that expectation: its first subscriber of a
module gains most, so a worsening device that alone fed rank 32 kept it at 15% success (measured,
``docs/departures/paper3.md``); the linear bound moves it to rank 4.

Inference uses the uniform ensemble (eq. 3); the ensemble's risk is at most the mean of the
modules' risks (Jensen), and each module's risk gap is its optimisation gap plus the gap between
its best parameters and the task optimum (eq. 31: Lipschitz continuity, the foundation-model
term). **Our choice**: that gap is the capacity term :math:`c_{\rm cap}r_m^{-a}`, and every module
starts from the foundation model (:math:`B_m=0`), so :math:`G_m(0)=g_{\rm fm}-c_{\rm cap}r_m^{-a}`
with :math:`g_{\rm fm}` the foundation model's gap: a larger module has more to gain.

.. math::
    \mathcal G_{\rm thm}(x) = \frac1M\sum_m\Big[G_m(t+1)+c_{\rm cap}r_m^{-a}\Big]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["TheoremCoefficients", "initial_module_gap", "module_gap_step", "theorem_outage_weight",
           "theorem_risk_gap", "theorem_risk_marginal"]


@dataclass(frozen=True)
class TheoremCoefficients:
    r"""Constants of the Theorem-1-shaped bound (none is from the paper: its symbols were lost).

    Attributes
    ----------
    contraction : float, default 0.1
        :math:`\mu/L\in(0,1]`, the PL/strong-convexity contraction per round.
    zeta1 : float, default 0.1
        :math:`\zeta_1\in[0,1/4)` of Assumption 3 (gradient dissimilarity's multiplicative part).
    noise : float, default 0.01
        :math:`c_2=2\zeta_2/L\ge0` (Assumption 3's additive part).
    heterogeneity : float, default 0.01
        :math:`c_{\rm het}\ge0`, weight of the measured dissimilarity :math:`\delta_k^2`.
    capacity : float, default 1.0
        :math:`c_{\rm cap}\ge0` of the foundation-model term :math:`c_{\rm cap}r_m^{-a}`.
    capacity_exponent : float, default 0.5
        :math:`a>0`.
    foundation_gap : float, default 1.0
        :math:`g_{\rm fm}`, the foundation model's risk gap; needs :math:`\ge c_{\rm cap}r_{\min}^{-a}`.
    """

    contraction: float = 0.1
    zeta1: float = 0.1
    noise: float = 0.01
    heterogeneity: float = 0.01
    capacity: float = 1.0
    capacity_exponent: float = 0.5
    foundation_gap: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.contraction <= 1:
            raise ValueError(f"TheoremCoefficients.contraction={self.contraction} must lie in (0, 1]")
        if not 0 <= self.zeta1 < 0.25:
            raise ValueError(f"TheoremCoefficients.zeta1={self.zeta1} must lie in [0, 0.25) (the recursion contracts)")
        for name in ("noise", "heterogeneity", "capacity", "foundation_gap"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"TheoremCoefficients.{name}={getattr(self, name)} must be >= 0")
        if not self.capacity_exponent > 0:
            raise ValueError(f"TheoremCoefficients.capacity_exponent={self.capacity_exponent} must be > 0")


def _capacity(ranks: ArrayLike, coef: TheoremCoefficients) -> np.ndarray:
    r = np.asarray(ranks, dtype=float)
    if r.ndim != 1 or np.any(r <= 0):
        raise ValueError(f"ranks must be a 1-d array of values > 0, got {r.tolist()}")
    return cast(np.ndarray, coef.capacity * r ** (-coef.capacity_exponent))


def initial_module_gap(ranks: ArrayLike, coef: TheoremCoefficients) -> np.ndarray:
    r""":math:`G_m(0)=g_{\rm fm}-c_{\rm cap}r_m^{-a}` (M,): every module starts as the foundation model."""
    cap = _capacity(ranks, coef)
    if np.any(cap > coef.foundation_gap):
        raise ValueError(f"foundation_gap={coef.foundation_gap} is below the capacity term {float(cap.max()):.4g} "
                         "of the smallest module")
    return cast(np.ndarray, coef.foundation_gap - cap)


def _weights(x: ArrayLike, success_prob: ArrayLike, data_sizes: ArrayLike,
             dissimilarity: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (K, M), got {x.shape}")
    k_dev = x.shape[0]
    s = np.broadcast_to(np.asarray(success_prob, float), (k_dev,))
    d = np.broadcast_to(np.asarray(data_sizes, float), (k_dev,))
    delta = np.broadcast_to(np.asarray(dissimilarity, float), (k_dev,))
    return x, s, d / max(float(d.sum()), 1e-300), delta


def _benefit(gap: ArrayLike, w: np.ndarray, delta: np.ndarray, coef: TheoremCoefficients) -> np.ndarray:
    r""":math:`\frac{D_k}{D}\big(4\frac{\mu}{L}\zeta_1G_m+c_2+c_{\rm het}\delta_k^2\big)/M`, shape (K, M)."""
    g = np.asarray(gap, float)
    per = 4.0 * coef.contraction * coef.zeta1 * g[None, :] + (coef.noise + coef.heterogeneity * delta ** 2)[:, None]
    return cast(np.ndarray, w[:, None] * per / g.shape[0])


def module_gap_step(gap: ArrayLike, x: ArrayLike, success_prob: ArrayLike, data_sizes: ArrayLike,
                    dissimilarity: ArrayLike, coef: TheoremCoefficients, empty_keeps: bool = True) -> np.ndarray:
    r""":math:`\bar G_m(t+1)=\pi_mG_m+(1-\pi_m)(A_mG_m+B_m)` of the module docstring, shape (M,)
    (``empty_keeps=False``: Chen et al.'s :math:`A_mG_m+B_m` for every module, :math:`\pi_m` ignored).

    Parameters
    ----------
    gap : array_like, shape (M,)
        :math:`G_m(t)\ge0`.
    x : array_like, shape (K, M)
        Subscriptions (relaxed values allowed).
    success_prob : array_like, shape (K,)
        :math:`s_k=1-q_k` (1 for a delivered update, 0 for a lost one, when committing a round).
    data_sizes : array_like, shape (K,)
        :math:`D_k`.
    dissimilarity : array_like, shape (K,)
        :math:`\delta_k\ge0`.
    coef : TheoremCoefficients
    """
    x, s, w, delta = _weights(x, success_prob, data_sizes, dissimilarity)
    g = np.asarray(gap, float)
    xs = x * s[:, None]
    phi = xs.T @ w  # (M,)
    a = 1.0 - coef.contraction + 4.0 * coef.contraction * coef.zeta1 * (1.0 - phi)
    floor = coef.noise + coef.heterogeneity * delta ** 2  # (K,)
    b = (w * floor) @ (1.0 - xs)  # (M,)
    empty = np.prod(1.0 - xs, axis=0) if empty_keeps else np.zeros(x.shape[1])  # (M,) pi_m
    return cast(np.ndarray, empty * g + (1.0 - empty) * (a * g + b))


def theorem_risk_gap(x: ArrayLike, success_prob: ArrayLike, data_sizes: ArrayLike, ranks: ArrayLike,
                     gap: ArrayLike, dissimilarity: ArrayLike, coef: TheoremCoefficients) -> float:
    r""":math:`\mathcal G_{\rm thm}(x)=\frac1M\sum_m[A_mG_m(t)+B_m+c_{\rm cap}r_m^{-a}]`: the bound the planner
    optimises (Chen et al.'s recursion as stated, linear in :math:`x` and :math:`s`; module docstring)."""
    nxt = module_gap_step(gap, x, success_prob, data_sizes, dissimilarity, coef, empty_keeps=False)
    return float(np.mean(nxt + _capacity(ranks, coef)))


def theorem_risk_marginal(x: ArrayLike, success_prob: ArrayLike, data_sizes: ArrayLike, gap: ArrayLike,
                          dissimilarity: ArrayLike, coef: TheoremCoefficients) -> np.ndarray:
    r"""Exact change (K, M) of :func:`theorem_risk_gap` when device :math:`k` moves from idle to module
    :math:`m` (the same at every ``x``: the bound is linear):

    .. math:: \Delta_{k,m} = -\frac{s_k}{M}\frac{D_k}{D}\Big(\frac{4\mu\zeta_1}{L}G_m(t)+c_2+c_{\rm het}\delta_k^2\Big)\le0
    """
    x, s, w, delta = _weights(x, success_prob, data_sizes, dissimilarity)
    return cast(np.ndarray, -s[:, None] * _benefit(gap, w, delta, coef))


def theorem_outage_weight(x: ArrayLike, success_prob: ArrayLike, data_sizes: ArrayLike, gap: ArrayLike,
                          dissimilarity: ArrayLike, coef: TheoremCoefficients) -> np.ndarray:
    r""":math:`w_k=\partial\mathcal G_{\rm thm}/\partial q_k=\sum_m x_{k,m}\frac{D_k}{MD}
    \big(4\frac{\mu}{L}\zeta_1G_m+c_2+c_{\rm het}\delta_k^2\big)\ge0`, shape (K,)."""
    x, _, w, delta = _weights(x, success_prob, data_sizes, dissimilarity)
    return cast(np.ndarray, np.sum(x * _benefit(gap, w, delta, coef), axis=1))
