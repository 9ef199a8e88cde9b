r"""Risk-gap bound of the uniform module ensemble (paper eq. 3), its marginals and outage weights.

The switching paradigm [wang2025switching] infers with the uniform ensemble of all :math:`M`
modules. For a loss convex in the predicted probabilities, the ensemble's risk is at most the
average of the modules' risks (Jensen), so **[R] our reconstruction** bounds the ensemble's
risk gap by the average of per-module gaps (the capacity and generalisation terms of
:mod:`airtune.allocation.switching.risk`, papers.md §3.4 [R]):

.. math::
    \mathcal G_{\rm ens}(x) = \frac1M\sum_{m=1}^M\Big[c_{\rm cap}r_m^{-a}
        + c_{\rm gen}\sqrt{\frac{\kappa r_m}{D_0+P_m+N_m(x)}}\Big],\qquad
    N_m(x)=\sum_k x_{k,m}(1-q_k)D_k,

where :math:`P_m` are the samples module :math:`m` aggregated in earlier rounds (the planner
keeps them with a forgetting factor). Unlike the per-device form of
:func:`airtune.allocation.switching.risk.risk_gap_bound`, adding data to a module has diminishing
returns, so devices spread over the modules and modules that lag behind become attractive:
every module counts in the ensemble. The capacity term does not depend on :math:`x`.
"""

from __future__ import annotations

from typing import cast

import numpy as np
from numpy.typing import ArrayLike

from airtune.allocation.switching.risk import RiskCoefficients

__all__ = ["ensemble_outage_weight", "ensemble_risk_gap", "ensemble_risk_marginal"]


def _prep(x: ArrayLike, success_prob: ArrayLike, data_sizes: ArrayLike, ranks: ArrayLike, module_samples: ArrayLike,
          coef: RiskCoefficients) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (K, M), got {x.shape}")
    k_dev, m_mod = x.shape
    eff = np.broadcast_to(np.asarray(success_prob, float), (k_dev,)) * np.broadcast_to(
        np.asarray(data_sizes, float), (k_dev,))
    r = np.broadcast_to(np.asarray(ranks, float), (m_mod,))
    if np.any(r <= 0):
        raise ValueError("ranks must be > 0")
    prior = coef.prior_samples + np.broadcast_to(np.asarray(module_samples, float), (m_mod,))
    gen_scale = coef.generalisation * np.sqrt(coef.complexity_per_rank * r)
    return x, eff, r, prior, gen_scale


def ensemble_risk_gap(x: ArrayLike, success_prob: ArrayLike, data_sizes: ArrayLike, ranks: ArrayLike,
                      module_samples: ArrayLike = 0.0,
                      coefficients: RiskCoefficients = RiskCoefficients()) -> float:
    r""":math:`\mathcal G_{\rm ens}(x)` of the module docstring.

    Parameters
    ----------
    x : array_like, shape (K, M)
        Subscriptions (relaxed values in [0, 1] allowed).
    success_prob : array_like, shape (K,)
        :math:`1-q_k`.
    data_sizes : array_like, shape (K,)
        :math:`D_k`.
    ranks : array_like, shape (M,)
        :math:`r_m > 0`.
    module_samples : float or array_like, shape (M,), default 0
        :math:`P_m \ge 0`.
    coefficients : RiskCoefficients
        :math:`c_{\rm cap}, a, c_{\rm gen}, \kappa, D_0` (``heterogeneity`` and ``idle_gap`` unused).

    Returns
    -------
    float
    """
    x, eff, r, prior, gen_scale = _prep(x, success_prob, data_sizes, ranks, module_samples, coefficients)
    cap = coefficients.capacity * r ** (-coefficients.capacity_exponent)
    return float(np.mean(cap + gen_scale / np.sqrt(prior + x.T @ eff)))


def ensemble_risk_marginal(x: ArrayLike, success_prob: ArrayLike, data_sizes: ArrayLike, ranks: ArrayLike,
                           module_samples: ArrayLike = 0.0,
                           coefficients: RiskCoefficients = RiskCoefficients()) -> np.ndarray:
    r"""Exact change of :math:`\mathcal G_{\rm ens}` when device :math:`k` moves from idle to module :math:`m`.

    Returns
    -------
    numpy.ndarray, shape (K, M)
        :math:`\Delta_{k,m} = \frac1M\big[g_m(T^{-k}_m+(1-q_k)D_k) - g_m(T^{-k}_m)\big]\le0`,
        :math:`g_m(T)=c_{\rm gen}\sqrt{\kappa r_m/T}`, :math:`T^{-k}_m = D_0+P_m+N_m-x_{k,m}(1-q_k)D_k`
        (row :math:`k` of ``x`` removed, all else held).
    """
    x, eff, r, prior, gen_scale = _prep(x, success_prob, data_sizes, ranks, module_samples, coefficients)
    t_minus = prior[None, :] + (x.T @ eff)[None, :] - x * eff[:, None]  # (K, M)
    delta = gen_scale[None, :] * (1.0 / np.sqrt(t_minus + eff[:, None]) - 1.0 / np.sqrt(t_minus))
    return cast(np.ndarray, delta / x.shape[1])


def ensemble_outage_weight(x: ArrayLike, success_prob: ArrayLike, data_sizes: ArrayLike, ranks: ArrayLike,
                           module_samples: ArrayLike = 0.0,
                           coefficients: RiskCoefficients = RiskCoefficients()) -> np.ndarray:
    r""":math:`w_k=\partial\mathcal G_{\rm ens}/\partial q_k\ge0`, shape (K,).

    .. math:: w_k = \frac1M\sum_m x_{k,m}\,\tfrac12\,c_{\rm gen}\sqrt{\kappa r_m}\,(D_0+P_m+N_m)^{-3/2}D_k
    """
    x, eff, r, prior, gen_scale = _prep(x, success_prob, data_sizes, ranks, module_samples, coefficients)
    slope = 0.5 * gen_scale * (prior + x.T @ eff) ** (-1.5)  # (M,)
    d = np.broadcast_to(np.asarray(data_sizes, float), (x.shape[0],))
    return cast(np.ndarray, (x @ slope) * d / x.shape[1])


def ensemble_module_quotas(num_participants: int, mean_samples: float, ranks: ArrayLike,
                           module_samples: ArrayLike = 0.0,
                           coefficients: RiskCoefficients = RiskCoefficients()) -> np.ndarray:
    r"""How many of :math:`N` participants each module should get (optimal for identical devices).

    Parameters
    ----------
    num_participants : int
        :math:`N \ge 0`.
    mean_samples : float
        :math:`\bar e`, effective samples one participant adds (mean :math:`(1-q_k)D_k`).
    ranks, module_samples, coefficients
        As in :func:`ensemble_risk_gap`.

    Returns
    -------
    numpy.ndarray of int, shape (M,)
        :math:`n_m\ge0` with :math:`\sum_m n_m = N`, minimising
        :math:`\sum_m g_m(D_0+P_m+n_m\bar e)`.

    Notes
    -----
    :math:`g_m(T)=c_{\rm gen}\sqrt{\kappa r_m/T}` is convex and decreasing, so the decrements
    :math:`g_m(T_m(n))-g_m(T_m(n+1))` fall with :math:`n`, and taking the :math:`N` largest
    decrements over all :math:`(m, n)` is optimal (greedy marginal allocation of a separable convex
    resource problem). The planner uses the quotas as per-module capacities of the switching
    step, which spreads devices over the modules (without them, every device's linearised best
    response is the same module). Source: papers.md §3.5(a) [R].
    """
    n = int(num_participants)
    r = np.asarray(ranks, dtype=float)
    if n <= 0:
        return np.zeros(r.shape[0], dtype=int)
    prior = coefficients.prior_samples + np.broadcast_to(np.asarray(module_samples, float), r.shape)
    gen_scale = coefficients.generalisation * np.sqrt(coefficients.complexity_per_rank * r)
    t = prior[:, None] + float(mean_samples) * np.arange(n + 1)[None, :]  # (M, N+1)
    g = gen_scale[:, None] / np.sqrt(t)
    dec = (g[:, :-1] - g[:, 1:]).ravel()  # (M*N,)
    top = np.argsort(-dec, kind="stable")[:n]
    return np.bincount(top // n, minlength=r.shape[0]).astype(int)
