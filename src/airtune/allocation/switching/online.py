r"""Online model switching of the switching paradigm: the primal-dual step of eqs. (8)-(12).

Paper 3 [wang2025switching], seed text §IV-A: each UE's switching subproblem (8) has a
long-term constraint (8b); the integer program is relaxed to the real domain, its per-round
cost (9) is linear, and the min-max form (10) is solved "on the fly based on the knowledge
before the :math:`t`-th round": a standard dual-ascent step on the multiplier (11) and a descent
step on the relaxed switching variables that approximates this round's cost by the previous
round's (12), after which "the integer solutions" are derived. Symbols were lost; **[R] our
reconstruction**, per device :math:`k` (no coupling between devices, as in (8)):

.. math::
    \lambda_k(t) &= \big[\lambda_k(t-1) + \beta\,g_k(\tilde x_k(t-1))\big]^+,
        \qquad g_k(x) = \rho - \textstyle\sum_m x_m \quad\text{(participation rate, (7f))}\\
    \tilde x_k(t) &= \Pi_{\mathcal X}\big[\tilde x_k(t-1) - \alpha\big(c_k(t-1) - \lambda_k(t)\mathbf 1\big)\big],
        \qquad \mathcal X = \{x\in[0,1]^M:\ \textstyle\sum_m x_m\le n_{\max}\}

with :math:`c_k(t-1)` the (M,) linear costs (9) of the previous round
(:math:`V\Delta\mathcal G_{k,m}+\lambda E_{k,m}`, the planner's). **Our choices**: the steps are
relative to the round's largest benefit :math:`\sigma=-\min_{k,m}c_{k,m}` (:math:`\alpha=\alpha_0/\sigma`,
:math:`\beta=\beta_0\sigma`, so they are unit-free); the first round has no previous round and
uses its own costs; rounding (:func:`round_relaxed`) is ``"threshold"`` (the device takes part
when its relaxed participation :math:`\sum_m\tilde x_m` is at least 1/2, with its largest entry)
or ``"randomized"`` (module :math:`m` with probability :math:`\tilde x_m`, idle with
:math:`1-\sum_m\tilde x_m`). Both read participation from the same quantity, the sum that the
constraint (7f) and the dual step (11) use. Thresholding each entry instead would idle a device
whose relaxed mass is spread over modules of near-equal cost (all of it, when the M costs are
close), so the first rounds of a run from :math:`\tilde x=0` scheduled nobody; that variant is
not kept.
"""

from __future__ import annotations

from typing import Literal, cast

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["dual_step", "primal_step", "project_capped_box", "round_relaxed"]


def project_capped_box(y: ArrayLike, cap: float = 1.0, iters: int = 100) -> np.ndarray:
    r"""Euclidean projection of each row of ``y`` (K, M) onto :math:`\{x\in[0,1]^M: \sum x\le\mathrm{cap}\}`.

    Rows inside the box with sum :math:`\le` cap are clipped only; otherwise
    :math:`x = \mathrm{clip}(y-\tau, 0, 1)` with :math:`\tau\ge0` found by bisection so the sum is cap.
    """
    y = np.atleast_2d(np.asarray(y, float))
    x = np.clip(y, 0.0, 1.0)
    over = x.sum(axis=1) > cap
    if over.any():
        yo = y[over]
        lo, hi = np.zeros(yo.shape[0]), np.max(yo, axis=1)
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            s = np.clip(yo - mid[:, None], 0.0, 1.0).sum(axis=1)
            lo, hi = np.where(s > cap, mid, lo), np.where(s > cap, hi, mid)
        x[over] = np.clip(yo - hi[:, None], 0.0, 1.0)
    return cast(np.ndarray, x)


def dual_step(multiplier: ArrayLike, x_relaxed: ArrayLike, rho: float, step: float) -> np.ndarray:
    r"""Eq. (11) [R]: :math:`\lambda_k\leftarrow[\lambda_k+\beta(\rho-\sum_m\tilde x_{k,m})]^+`, shape (K,)."""
    g = float(rho) - np.asarray(x_relaxed, float).sum(axis=1)
    return cast(np.ndarray, np.maximum(np.asarray(multiplier, float) + float(step) * g, 0.0))


def primal_step(x_relaxed: ArrayLike, cost: ArrayLike, multiplier: ArrayLike, step: float,
                eligible: ArrayLike | None = None, max_modules: int = 1) -> np.ndarray:
    r"""Eq. (12) [R]: projected descent :math:`\Pi_{\mathcal X}[\tilde x-\alpha(c-\lambda\mathbf1)]`, ineligible pairs 0."""
    x = np.asarray(x_relaxed, float)
    c = np.asarray(cost, float)
    y = x - float(step) * (c - np.asarray(multiplier, float)[:, None])
    if eligible is not None:
        y = np.where(np.asarray(eligible, bool), y, -1.0)
    return project_capped_box(y, float(max_modules))


def round_relaxed(x_relaxed: ArrayLike, how: Literal["threshold", "randomized"],
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """Integer module per device (K,; ``-1`` idle) from the relaxed :math:`\\tilde x` (one module per device)."""
    x = np.asarray(x_relaxed, float)
    if how == "threshold":
        return np.where(x.sum(axis=1) >= 0.5, np.argmax(x, axis=1), -1)
    if rng is None:
        raise ValueError("randomized rounding needs a generator")
    u = np.asarray(rng.random(x.shape[0]), float)
    cum = np.cumsum(x, axis=1)
    m = (u[:, None] >= cum).sum(axis=1)
    return np.where(m < x.shape[1], m, -1)
