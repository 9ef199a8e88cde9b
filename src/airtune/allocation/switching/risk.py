r"""Inference-risk-gap bound of the switching paradigm, and its per-(device, module) marginals.

The paper proves "a tractable upper bound on the inference risk gap" [wang2025switching] but its
theorem could not be read (papers.md §0). This module implements the **[R] reconstruction** of
papers.md §3.4: a bound that depends on the module choice :math:`x` (shape ``(K, M)``) through

* a **capacity** (approximation) term decreasing in the module rank :math:`r_m`,
* a **generalisation** term shrinking with the effective data aggregated into module :math:`m`,
  :math:`\sqrt{\mathrm{complexity}(r_m) / (D_0 + \sum_k x_{k,m}(1-q_k)D_k)}`,
* a **heterogeneity** term (divergence between device :math:`k` and module :math:`m`'s mixture),

and on power and bandwidth through the success probabilities :math:`1-q_k` (a lost upload adds
no data). It is deliberately isolated: the switching solver only sees the ``(K, M)`` marginals
of :func:`risk_gap_marginal` (or the gradient of :func:`risk_gap_gradient`), so the paper's own
theorem can replace :func:`risk_gap_bound` here without touching any solver.

Bound [R] (per-device average; a device that does not take part keeps an "idle" gap
:math:`g^0_k`)

.. math::
    \mathcal G(x) = \frac1K\sum_{k=1}^K\Big[\sum_{m=1}^M x_{k,m}\,g_{k,m}(x)
        + \Big(1-\sum_m x_{k,m}\Big) g^0_k\Big],\qquad
    g_{k,m}(x) = \underbrace{c_{\rm cap}\,r_m^{-a}}_{\text{capacity}}
        + \underbrace{c_{\rm gen}\sqrt{\frac{\kappa\,r_m}{D_0+N_m(x)}}}_{\text{generalisation}}
        + \underbrace{c_{\rm het}\,\delta_{k,m}}_{\text{heterogeneity}},

with :math:`N_m(x)=\sum_j x_{j,m}(1-q_j)D_j` and, by default,
:math:`g^0_k=\max_m\big[c_{\rm cap}r_m^{-a}+c_{\rm gen}\sqrt{\kappa r_m/D_0}
+c_{\rm het}\delta_{k,m}\big]`
(the gap of the worst module trained on no data), so that taking part never raises the bound.
The formula accepts a relaxed :math:`x\in[0,1]^{K\times M}`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "RiskCoefficients",
    "RiskGapFn",
    "risk_gap_bound",
    "risk_gap_gradient",
    "risk_gap_marginal",
]

RiskGapFn = Callable[..., float]
"""Signature of a pluggable bound: ``fn(x, success_prob, data_sizes, ranks, divergences,
coefficients) -> float`` (same arguments as :func:`risk_gap_bound`)."""


@dataclass(frozen=True)
class RiskCoefficients:
    r"""Constants of the [R] bound (none is from the paper; all are configuration).

    Attributes
    ----------
    capacity : float, default 1.0
        :math:`c_{\rm cap} \ge 0`, weight of the capacity term :math:`r_m^{-a}`.
    capacity_exponent : float, default 0.5
        :math:`a > 0`, decay of the capacity term with the rank.
    generalisation : float, default 1.0
        :math:`c_{\rm gen} \ge 0`, weight of the generalisation term.
    complexity_per_rank : float, default 1.0
        :math:`\kappa > 0`: :math:`\mathrm{complexity}(r) = \kappa r` (LoRA parameters grow
        linearly in the rank).
    heterogeneity : float, default 1.0
        :math:`c_{\rm het} \ge 0`, weight of the divergence term.
    prior_samples : float, default 1.0
        :math:`D_0 > 0`, samples a module holds before this round (keeps an empty module's
        term finite).
    idle_gap : float or None, default None
        :math:`g^0_k` for every device; ``None`` takes the worst empty-module gap per device.
    """

    capacity: float = 1.0
    capacity_exponent: float = 0.5
    generalisation: float = 1.0
    complexity_per_rank: float = 1.0
    heterogeneity: float = 1.0
    prior_samples: float = 1.0
    idle_gap: float | None = None

    def __post_init__(self) -> None:
        for name in ("capacity", "generalisation", "heterogeneity"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"RiskCoefficients.{name}={getattr(self, name)} must be >= 0")
        for name in ("capacity_exponent", "complexity_per_rank", "prior_samples"):
            if not getattr(self, name) > 0:
                raise ValueError(f"RiskCoefficients.{name}={getattr(self, name)} must be > 0")


def _prepare(x: ArrayLike, success_prob: ArrayLike, data_sizes: ArrayLike, ranks: ArrayLike,
             divergences: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (K, M), got {x.shape}")
    k_dev, m_mod = x.shape
    s = np.broadcast_to(np.asarray(success_prob, dtype=float), (k_dev,))
    d = np.broadcast_to(np.asarray(data_sizes, dtype=float), (k_dev,))
    r = np.broadcast_to(np.asarray(ranks, dtype=float), (m_mod,))
    div = np.broadcast_to(np.asarray(divergences, dtype=float), (k_dev, m_mod))
    if np.any(r <= 0):
        raise ValueError("ranks must be > 0")
    return x, s, d, r, div


def _terms(r: np.ndarray, div: np.ndarray, s: np.ndarray, d: np.ndarray,
           coef: RiskCoefficients) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    cap = coef.capacity * r ** (-coef.capacity_exponent)  # (M,)
    gen_scale = coef.generalisation * np.sqrt(coef.complexity_per_rank * r)  # (M,)
    het = coef.heterogeneity * div  # (K, M)
    eff = s * d  # (K,) effective samples per device
    if coef.idle_gap is None:
        idle = np.max(cap + gen_scale / np.sqrt(coef.prior_samples) + het, axis=1)  # (K,)
    else:
        idle = np.full(s.shape, float(coef.idle_gap))
    return cap, gen_scale, het, eff, idle


def risk_gap_bound(
    x: ArrayLike,
    success_prob: ArrayLike,
    data_sizes: ArrayLike,
    ranks: ArrayLike,
    divergences: ArrayLike,
    coefficients: RiskCoefficients = RiskCoefficients(),
) -> float:
    r"""Evaluate the [R] inference-risk-gap bound :math:`\mathcal G(x)` (module docstring).

    Parameters
    ----------
    x : array_like, shape (K, M)
        Module subscription :math:`x_{k,m}` (bool or relaxed in [0, 1]; rows sum to <= 1).
    success_prob : array_like, shape (K,)
        Upload success probability :math:`1 - q_k` in [0, 1].
    data_sizes : array_like, shape (K,)
        Local samples :math:`D_k`.
    ranks : array_like, shape (M,)
        Module ranks :math:`r_m > 0`.
    divergences : array_like, shape (K, M)
        :math:`\delta_{k,m} \ge 0`: divergence of device :math:`k`'s data from module
        :math:`m`'s subscriber mixture (e.g. total variation of label histograms).
    coefficients : RiskCoefficients
        Constants of the bound.

    Returns
    -------
    float
        :math:`\mathcal G(x)` (dimensionless, same units as the risk).

    Notes
    -----
    .. math::
        \mathcal G(x) = \frac1K\sum_k\Big[\sum_m x_{k,m}
        \Big(c_{\rm cap}r_m^{-a} + c_{\rm het}\delta_{k,m}\Big)
        + \Big(1-\sum_m x_{k,m}\Big)g^0_k\Big]
        + \frac1K\sum_m n_m\,c_{\rm gen}\sqrt{\frac{\kappa r_m}{D_0+N_m}},\quad
        n_m=\sum_k x_{k,m}

    Source: papers.md §3.4 [R] (shape only; [wang2025switching] states that a bound exists).
    """
    x, s, d, r, div = _prepare(x, success_prob, data_sizes, ranks, divergences)
    k_dev = x.shape[0]
    if k_dev == 0:
        return 0.0
    cap, gen_scale, het, eff, idle = _terms(r, div, s, d, coefficients)
    n_m = x.sum(axis=0)  # (M,)
    big_n = x.T @ eff  # (M,)
    gen = gen_scale / np.sqrt(coefficients.prior_samples + big_n)  # (M,)
    linear = np.sum(x * (cap[None, :] + het)) + np.sum((1.0 - x.sum(axis=1)) * idle)
    return float((linear + np.sum(n_m * gen)) / k_dev)


def risk_gap_marginal(
    x: ArrayLike,
    success_prob: ArrayLike,
    data_sizes: ArrayLike,
    ranks: ArrayLike,
    divergences: ArrayLike,
    coefficients: RiskCoefficients = RiskCoefficients(),
) -> np.ndarray:
    r"""Exact change of the bound when device :math:`k` moves from idle to module :math:`m`.

    Everything else held at ``x``; used by the switching solver as :math:`\Delta\mathcal G_{k,m}`.

    Parameters
    ----------
    x, success_prob, data_sizes, ranks, divergences, coefficients
        As in :func:`risk_gap_bound`.

    Returns
    -------
    numpy.ndarray, shape (K, M)
        :math:`\Delta\mathcal G_{k,m} = \mathcal G(x^{(k\to m)}) - \mathcal G(x^{(k\to 0)})`
        (non-positive with the default idle gap).

    Notes
    -----
    With :math:`x^{-k}` = ``x`` with row :math:`k` zeroed,
    :math:`N^{-k}_m = N_m - x_{k,m}(1-q_k)D_k`, :math:`n^{-k}_m = n_m - x_{k,m}` and
    :math:`\mathrm{gen}_m(N) = c_{\rm gen}\sqrt{\kappa r_m/(D_0+N)}`:

    .. math::
        K\,\Delta\mathcal G_{k,m} = c_{\rm cap}r_m^{-a} + c_{\rm het}\delta_{k,m} - g^0_k
        + (n^{-k}_m+1)\,\mathrm{gen}_m\big(N^{-k}_m+(1-q_k)D_k\big)
        - n^{-k}_m\,\mathrm{gen}_m\big(N^{-k}_m\big)

    Source: papers.md §3.5(a) [R] (marginal of the §3.4 [R] bound).
    """
    x, s, d, r, div = _prepare(x, success_prob, data_sizes, ranks, divergences)
    k_dev = x.shape[0]
    cap, gen_scale, het, eff, idle = _terms(r, div, s, d, coefficients)
    d0 = coefficients.prior_samples
    n_minus = x.sum(axis=0)[None, :] - x  # (K, M)
    big_n_minus = (x.T @ eff)[None, :] - x * eff[:, None]  # (K, M)
    gen_with = gen_scale[None, :] / np.sqrt(d0 + big_n_minus + eff[:, None])  # (K, M)
    gen_without = gen_scale[None, :] / np.sqrt(d0 + big_n_minus)  # (K, M)
    delta = cap[None, :] + het - idle[:, None] + (n_minus + 1.0) * gen_with - n_minus * gen_without
    return cast(np.ndarray, delta / max(k_dev, 1))


def risk_gap_gradient(
    x: ArrayLike,
    success_prob: ArrayLike,
    data_sizes: ArrayLike,
    ranks: ArrayLike,
    divergences: ArrayLike,
    coefficients: RiskCoefficients = RiskCoefficients(),
) -> np.ndarray:
    r"""Partial derivatives :math:`\partial\mathcal G/\partial x_{k,m}` (the linearisation).

    Parameters
    ----------
    x, success_prob, data_sizes, ranks, divergences, coefficients
        As in :func:`risk_gap_bound`.

    Returns
    -------
    numpy.ndarray, shape (K, M)
        Gradient of :math:`\mathcal G` at ``x`` (relaxed :math:`x` allowed).

    Notes
    -----
    .. math::
        K\frac{\partial\mathcal G}{\partial x_{k,m}} = c_{\rm cap}r_m^{-a} + c_{\rm het}\delta_{k,m}
        - g^0_k + \mathrm{gen}_m(N_m)
        - \frac{n_m}{2}\,c_{\rm gen}\sqrt{\kappa r_m}\,(D_0+N_m)^{-3/2}(1-q_k)D_k

    Source: papers.md §3.5(a) [R] ("linearise :math:`\mathcal G` around the current
    :math:`x`").
    """
    x, s, d, r, div = _prepare(x, success_prob, data_sizes, ranks, divergences)
    k_dev = x.shape[0]
    cap, gen_scale, het, eff, idle = _terms(r, div, s, d, coefficients)
    total = coefficients.prior_samples + x.T @ eff  # (M,)
    gen = gen_scale / np.sqrt(total)  # (M,)
    slope = -0.5 * x.sum(axis=0) * gen_scale * total ** (-1.5)  # (M,)
    grad = cap[None, :] + het - idle[:, None] + gen[None, :] + slope[None, :] * eff[:, None]
    return cast(np.ndarray, grad / max(k_dev, 1))
