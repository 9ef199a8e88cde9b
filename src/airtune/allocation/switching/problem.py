r"""Model switching: the per-round costs and queues, and the feasibility repair of an assignment.

Paper 3 [wang2025switching]; the formulas were not readable (papers.md §0), so everything here
is the **[R] reconstruction** of papers.md §3.5(a). The solvers of
:mod:`airtune.allocation.switching.assignment` (dual ascent, greedy and one-shot baselines) minimise
:math:`\sum_{k,m}c_{k,m}x_{k,m}` with at most one module per device under the coupling
constraints :math:`\sum_k\sum_{m\in\ell}a_{k,m}x_{k,m}\le C_\ell`; this module holds what they
share:

* :func:`switching_costs`: the drift-plus-penalty costs
  :math:`c_{k,m}=V\Delta\mathcal G_{k,m}+Q_kE_{k,m}-H_k` [neely2010lyapunov], and
  :func:`step_participation_queues`, the virtual queue :math:`H_k` of the long-term
  participation constraint;
* :func:`repair_assignment`: make an assignment satisfy the coupling constraints (drop the
  worst benefit-per-resource devices, then greedily refill the slack), built from the
  vectorised helpers the solvers also call directly.
"""

from __future__ import annotations

from typing import cast

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "repair_assignment",
    "step_participation_queues",
    "switching_costs",
    "assignment_setup",
    "module_usage",
    "assignment_objective",
    "within_capacity",
    "drop_violations",
    "fill_slack",
]

_FEAS_RTOL = 1e-12


def switching_costs(
    delta_risk: ArrayLike,
    energy_j: ArrayLike,
    energy_queue: ArrayLike,
    v: float,
    participation_backlog: ArrayLike | None = None,
) -> np.ndarray:
    r"""Drift-plus-penalty cost of each (device, module) choice relative to staying idle.

    Parameters
    ----------
    delta_risk : array_like, shape (K, M)
        :math:`\Delta\mathcal G_{k,m}` (e.g. :func:`airtune.allocation.switching.risk.risk_gap_marginal`).
    energy_j : array_like, shape (K, M)
        Energy :math:`E_{k,m}` in J to train and upload module :math:`m` on device :math:`k`.
    energy_queue : array_like, shape (K,)
        Energy virtual queue :math:`Q_k \ge 0` (J).
    v : float
        Lyapunov trade-off :math:`V \ge 0`.
    participation_backlog : array_like, shape (K,), optional
        Participation virtual queue :math:`H_k\ge0` (:func:`step_participation_queues`).

    Returns
    -------
    numpy.ndarray, shape (K, M)
        :math:`c_{k,m}`.

    Notes
    -----
    .. math:: c_{k,m} = V\,\Delta\mathcal G_{k,m} + Q_k E_{k,m} - H_k

    The :math:`-H_k` term is the drift of the long-term participation constraint (7f)
    :math:`\frac1T\sum_t\sum_m x_{k,m}(t)\ge\rho_{\min}`: its queue's backlog lowers the cost of
    taking part. Source: papers.md §3.5 [R] ([neely2010lyapunov] drift-plus-penalty).
    """
    dg = np.asarray(delta_risk, dtype=float)
    cost = float(v) * dg + np.asarray(energy_queue, dtype=float)[:, None] * np.asarray(
        energy_j, dtype=float
    )
    if participation_backlog is not None:
        cost = cost - np.asarray(participation_backlog, dtype=float)[:, None]
    return cast(np.ndarray, cost)


def step_participation_queues(
    backlog: ArrayLike, x: ArrayLike, min_rate: ArrayLike
) -> np.ndarray:
    r"""Advance the participation-rate virtual queues by one round.

    Parameters
    ----------
    backlog : array_like, shape (K,)
        :math:`H_k(t) \ge 0`.
    x : array_like, shape (K, M)
        This round's subscription.
    min_rate : float or array_like, shape (K,)
        :math:`\rho_{\min,k}\in[0,1]`, required long-run participation rate.

    Returns
    -------
    numpy.ndarray, shape (K,)
        :math:`H_k(t+1)`.

    Notes
    -----
    .. math:: H_k(t+1) = \max\{H_k(t) + \rho_{\min,k} - \textstyle\sum_m x_{k,m}(t),\ 0\}

    Source: papers.md §3.5 [R] (long-term constraint as a virtual queue, [neely2010lyapunov]).
    """
    part = np.asarray(x, dtype=float).sum(axis=1)
    h = np.asarray(backlog, dtype=float) + np.asarray(min_rate, dtype=float) - part
    return cast(np.ndarray, np.maximum(h, 0.0))


def assignment_setup(cost: ArrayLike, resource: ArrayLike, capacity: ArrayLike,
                     eligible: ArrayLike | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    cost = np.asarray(cost, dtype=float)
    if cost.ndim != 2:
        raise ValueError(f"cost must have shape (K, M), got {cost.shape}")
    k_dev, m_mod = cost.shape
    res = np.broadcast_to(np.asarray(resource, dtype=float), (k_dev, m_mod))
    if np.any(res < 0) or not np.all(np.isfinite(res)):
        raise ValueError("resource must be finite and >= 0")
    cap = np.asarray(capacity, dtype=float)
    if cap.ndim == 0:
        cap, group = cap.reshape(1), np.zeros(m_mod, dtype=int)
    elif cap.shape == (m_mod,):
        group = np.arange(m_mod)
    else:
        raise ValueError(
            f"capacity must be a scalar or have shape (M,)=({m_mod},), got {cap.shape}"
        )
    elig = np.ones((k_dev, m_mod), bool) if eligible is None else np.broadcast_to(
        np.asarray(eligible, dtype=bool), (k_dev, m_mod)
    )
    masked = np.where(elig & np.isfinite(cost), cost, np.inf)  # (K, M)
    return masked, res, cap, group


def module_usage(module: np.ndarray, res: np.ndarray, group: np.ndarray, num_groups: int) -> np.ndarray:
    on = module >= 0
    k = np.flatnonzero(on)
    m = module[on]
    return np.bincount(group[m], weights=res[k, m], minlength=num_groups)


def assignment_objective(module: np.ndarray, cost: np.ndarray) -> float:
    on = module >= 0
    return float(np.sum(cost[np.flatnonzero(on), module[on]]))


def within_capacity(usage: np.ndarray, cap: np.ndarray) -> np.ndarray:
    return cast(np.ndarray, usage <= cap + _FEAS_RTOL * np.maximum(np.abs(cap), 1.0))


def drop_violations(module: np.ndarray, cost: np.ndarray, res: np.ndarray, cap: np.ndarray,
                    group: np.ndarray) -> np.ndarray:
    """Drop the lowest benefit-per-resource devices of each violated constraint (vectorised)."""
    module = module.copy()
    excess = module_usage(module, res, group, cap.shape[0]) - cap  # (L,)
    if np.all(within_capacity(excess + cap, cap)):
        return module
    k = np.flatnonzero(module >= 0)
    m = module[k]
    g, a = group[m], res[k, m]
    benefit = -cost[k, m]
    ratio = np.divide(benefit, a, out=np.where(benefit > 0, np.inf, -np.inf), where=a > 0)
    order = np.lexsort((ratio, g))  # by constraint, then worst ratio first
    g_s, a_s = g[order], a[order]
    cum = np.cumsum(a_s)
    start = np.searchsorted(g_s, g_s, side="left")
    before = cum - a_s - np.where(start > 0, cum[start - 1], 0.0)  # dropped before this one
    drop = before < excess[g_s] - _FEAS_RTOL * np.maximum(np.abs(cap[g_s]), 1.0)
    module[k[order[drop]]] = -1
    return module


def fill_slack(module: np.ndarray, cost: np.ndarray, res: np.ndarray, cap: np.ndarray, group: np.ndarray,
               passes: int = 3) -> np.ndarray:
    """Greedily add idle devices with negative cost into the remaining slack (vectorised)."""
    module = module.copy()
    for _ in range(passes):
        slack = cap - module_usage(module, res, group, cap.shape[0])  # (L,)
        idle = np.flatnonzero(module < 0)
        if idle.size == 0:
            break
        c, a = cost[idle], res[idle]  # (I, M)
        fits = (c < 0) & (a <= slack[group][None, :] + _FEAS_RTOL)
        cand_cost = np.where(fits, c, np.inf)
        m = np.argmin(cand_cost, axis=1)
        ok = np.isfinite(cand_cost[np.arange(idle.size), m])
        if not ok.any():
            break
        k, m = idle[ok], m[ok]
        g, a_km, benefit = group[m], res[k, m], -cost[k, m]
        ratio = np.divide(benefit, a_km, out=np.full(k.shape, np.inf), where=a_km > 0)
        order = np.lexsort((-ratio, g))  # best benefit per resource first
        g_s, a_s = g[order], a_km[order]
        cum = np.cumsum(a_s)
        start = np.searchsorted(g_s, g_s, side="left")
        within = cum - np.where(start > 0, cum[start - 1], 0.0)
        take = within_capacity(within, slack[g_s])  # a prefix per group: resources are >= 0
        if not take.any():
            break
        module[k[order[take]]] = m[order[take]]
    return module


def repair_assignment(
    module: ArrayLike,
    cost: ArrayLike,
    resource: ArrayLike,
    capacity: ArrayLike,
    eligible: ArrayLike | None = None,
    fill: bool = True,
) -> np.ndarray:
    r"""Make an assignment satisfy the coupling constraints, then refill the slack.

    Parameters
    ----------
    module : array_like of int, shape (K,)
        Module per device, ``-1`` idle.
    cost, resource : array_like, shape (K, M)
        :math:`c_{k,m}` and :math:`a_{k,m} \ge 0`.
    capacity : float or array_like, shape (M,)
        One total capacity, or one per module.
    eligible : array_like of bool, shape (K, M), optional
        Allowed pairs (default all); ineligible assignments are dropped first.
    fill : bool, default True
        Also run the greedy refill.

    Returns
    -------
    numpy.ndarray of int, shape (K,)
        Feasible module per device (``-1`` idle).

    Notes
    -----
    Drop: within each violated constraint :math:`\ell`, sort its devices by
    :math:`(-c_{k,m_k})/a_{k,m_k}` ascending and drop the shortest prefix whose resource covers
    the excess :math:`\sum a - C_\ell`. Fill (up to 3 passes): every idle device proposes its
    cheapest fitting module with :math:`c_{k,m}<0`; proposals are accepted by decreasing
    benefit per resource while the constraint's slack lasts. Source: papers.md §3.5(a) [R].
    """
    masked, res, cap, group = assignment_setup(cost, resource, capacity, eligible)
    mod = np.asarray(module, dtype=int).copy()
    on = np.flatnonzero(mod >= 0)
    mod[on[~np.isfinite(masked[on, mod[on]])]] = -1
    mod = drop_violations(mod, masked, res, cap, group)
    return fill_slack(mod, masked, res, cap, group) if fill else mod
