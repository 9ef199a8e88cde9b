r"""Model switching: which device trains which LoRA module this round (Lagrangian dual ascent).

Paper 3 [wang2025switching] solves its "model switching" subproblem by Lagrangian dual ascent;
the formulas were not readable (papers.md §0), so everything here is the **[R] reconstruction**
of papers.md §3.5(a).

Per-round problem [R]. Devices :math:`k=1..K`, modules :math:`m=1..M`; :math:`c_{k,m}` is the
cost of device :math:`k` training and uploading module :math:`m` relative to staying idle
(:func:`switching_costs`: :math:`V\Delta\mathcal G_{k,m}+Q_kE_{k,m}-H_k`), :math:`a_{k,m}\ge0`
its use of a shared resource (airtime, bandwidth share), :math:`C_\ell` the capacity of
coupling constraint :math:`\ell` (one total constraint, or one per module):

.. math::
    \min_{x\in\{0,1\}^{K\times M}}\ \sum_{k,m}c_{k,m}x_{k,m}\quad\text{s.t.}\quad
    \sum_m x_{k,m}\le 1,\quad x_{k,m}=0\ \text{if not eligible},\quad
    \sum_k\sum_{m\in\ell}a_{k,m}x_{k,m}\le C_\ell .

Relaxing the coupling with :math:`\mu\ge0` gives the min–max form
:math:`\max_{\mu\ge0}\min_{x}L(x,\mu)`,
:math:`L=\sum c_{k,m}x_{k,m}+\sum_\ell\mu_\ell(\sum a x-C_\ell)`.
For fixed :math:`\mu` the inner LP over each device's simplex is solved at a vertex:

.. math::
    m_k(\mu)=\arg\min_m\big(c_{k,m}+\mu_{\ell(m)}a_{k,m}\big),\quad x_{k,m_k}=1
    \ \text{iff that value is}<0,\qquad
    d(\mu)=\sum_k\min\{0,\min_m(c_{k,m}+\mu_{\ell(m)}a_{k,m})\}-\mu^\top C .

:math:`\max_\mu d(\mu)` equals the LP relaxation's optimum (a lower bound on the integer
optimum). Dual ascent (projected subgradient)
:math:`\mu\leftarrow[\mu+\eta_i(\sum_k a_{k,m_k}-C)]^+`, :math:`\eta_i=\eta_0/\sqrt i`.
Every iterate :math:`x(\mu)` is made feasible by :func:`repair_assignment` (drop the worst
benefit-per-resource devices, then greedily refill the slack); the ergodic average
:math:`\bar x` is rounded and repaired too. The best feasible point so far is kept.

The per-round costs, the participation queue and the repair live in
:mod:`airtune.allocation.switching.problem` (re-exported here).

Stopping rule: stop at iteration :math:`i` when
:math:`P^\star_i - D^\star_i \le \epsilon\,(1+|P^\star_i|)` (best repaired primal
:math:`P^\star`, best dual :math:`D^\star`) or :math:`i=i_{\max}`. Guarantee:
:math:`P^\star - \mathrm{OPT} \le P^\star - D^\star` (weak duality, reported as ``gap``), and
when the coupling is slack at :math:`\mu=0` the first iterate is optimal (gap 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
from numpy.typing import ArrayLike

from airtune.allocation.result import Allocation
from airtune.allocation.switching.problem import (
    assignment_objective,
    assignment_setup,
    drop_violations,
    fill_slack,
    module_usage,
    within_capacity,
)

__all__ = [
    "SwitchingResult",
    "assignment_from_modules",
    "modules_from_assignment",
    "switch_dual_ascent",
    "switch_greedy",
    "switch_one_shot",
]


@dataclass(frozen=True, eq=False)
class SwitchingResult:
    r"""Outcome of a switching solver (scipy ``OptimizeResult`` style; never raised).

    Attributes
    ----------
    x : numpy.ndarray of bool, shape (K, M)
        Module subscription; at most one ``True`` per row.
    mu : numpy.ndarray, shape (L,)
        Final multipliers of the coupling constraints (zeros for heuristics).
    dual_objective : float
        Best dual value :math:`D^\star` (a lower bound on the optimum; ``-inf`` for heuristics).
    primal_objective : float
        :math:`\sum c_{k,m}x_{k,m}` at ``x``.
    iterations : int
        Dual-ascent iterations run (0 for heuristics).
    converged : bool
        Whether the stopping rule was met.
    message : str
        Termination reason.
    feasible : bool
        Whether ``x`` satisfies every coupling constraint.
    usage : numpy.ndarray, shape (L,)
        :math:`\sum_k\sum_{m\in\ell}a_{k,m}x_{k,m}` at ``x``.
    x_relaxed : numpy.ndarray, shape (K, M)
        Ergodic average of the dual iterates :math:`\bar x` (relaxed solution estimate).
    """

    x: np.ndarray
    mu: np.ndarray
    dual_objective: float
    primal_objective: float
    iterations: int
    converged: bool
    message: str
    feasible: bool = True
    usage: np.ndarray = field(default_factory=lambda: np.zeros(1))
    x_relaxed: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("x", "mu", "usage", "x_relaxed"):
            val = getattr(self, name)
            if val is None:
                continue
            arr = np.array(val, dtype=bool if name == "x" else float)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def gap(self) -> float:
        r""":math:`P^\star - D^\star \ge P^\star - \mathrm{OPT}` (``inf`` without a dual bound)."""
        return float(self.primal_objective - self.dual_objective)

    @property
    def module(self) -> np.ndarray:
        """Module index per device, shape (K,), ``-1`` where idle."""
        return modules_from_assignment(self.x)

    @property
    def selected(self) -> np.ndarray:
        """Participating devices, shape (K,) bool."""
        return cast(np.ndarray, self.x.any(axis=1))

    def to_allocation(
        self, bandwidth_hz: ArrayLike, power_w: ArrayLike, objective: float | None = None
    ) -> Allocation:
        """Combine with a bandwidth and power vector (zeroed where idle) into an Allocation."""
        sel = self.selected
        bw = np.where(sel, np.asarray(bandwidth_hz, dtype=float), 0.0)
        pw = np.where(sel, np.asarray(power_w, dtype=float), 0.0)
        return Allocation(
            selected=sel, bandwidth_hz=bw, power_w=pw,
            objective=self.primal_objective if objective is None else objective,
            converged=self.converged, iterations=self.iterations, message=self.message,
            extra={"module": self.module, "mu": self.mu, "switching_gap": self.gap},
        )


# --------------------------------------------------------------------------- helpers


def modules_from_assignment(x: ArrayLike) -> np.ndarray:
    """Module index per device from a (K, M) 0/1 matrix (``-1`` where a row is all zero)."""
    x = np.asarray(x, dtype=bool)
    return np.where(x.any(axis=1), np.argmax(x, axis=1), -1)


def assignment_from_modules(module: ArrayLike, num_modules: int) -> np.ndarray:
    """(K, M) bool matrix from module indices (``-1`` = idle)."""
    module = np.asarray(module, dtype=int)
    x = np.zeros((module.shape[0], int(num_modules)), dtype=bool)
    on = module >= 0
    x[np.flatnonzero(on), module[on]] = True
    return x




# --------------------------------------------------------------------------- solvers


def _best_response(masked: np.ndarray, res: np.ndarray, mu: np.ndarray,
                   group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    priced = masked + mu[group][None, :] * res  # (K, M)
    m = np.argmin(priced, axis=1)
    val = priced[np.arange(masked.shape[0]), m]
    return np.where(val < 0, m, -1), np.minimum(val, 0.0)


def _finish(module: np.ndarray, masked: np.ndarray, res: np.ndarray, cap: np.ndarray, group: np.ndarray, mu: np.ndarray,
            dual: float, iters: int, converged: bool, message: str,
            x_bar: np.ndarray | None = None) -> SwitchingResult:
    usage = module_usage(module, res, group, cap.shape[0])
    return SwitchingResult(
        x=assignment_from_modules(module, masked.shape[1]), mu=mu, dual_objective=dual,
        primal_objective=assignment_objective(module, masked), iterations=iters, converged=converged,
        message=message, feasible=bool(np.all(within_capacity(usage, cap))), usage=usage,
        x_relaxed=x_bar,
    )


def switch_dual_ascent(
    cost: ArrayLike,
    resource: ArrayLike,
    capacity: ArrayLike,
    eligible: ArrayLike | None = None,
    step0: float | None = None,
    max_iter: int = 100,
    tol: float = 1e-6,
    mu0: ArrayLike | None = None,
    patience: int | None = None,
) -> SwitchingResult:
    r"""Model switching by Lagrangian dual ascent with primal repair (module docstring).

    Parameters
    ----------
    cost : array_like, shape (K, M)
        :math:`c_{k,m}` relative to idle (:func:`switching_costs`); idle costs 0.
    resource : array_like, shape (K, M)
        :math:`a_{k,m} \ge 0` (e.g. airtime in s or minimum bandwidth in Hz).
    capacity : float or array_like, shape (M,)
        :math:`C` (one total constraint, :math:`L=1`) or :math:`C_m` per module (:math:`L=M`).
    eligible : array_like of bool, shape (K, M), optional
        Pairs a device may train (memory/compute); default all.
    step0 : float, optional
        :math:`\eta_0`. Default: typical price :math:`\mathrm{median}(-c_{k,m}/a_{k,m})`
        (over beneficial pairs) divided by :math:`\max_\ell|u_\ell(0)-C_\ell|`, so the first
        step moves :math:`\mu` to about the price at which devices become indifferent.
    max_iter : int, default 100
        :math:`i_{\max}`.
    tol : float, default 1e-6
        :math:`\epsilon` of the stopping rule.
    mu0 : array_like, shape (L,), optional
        Warm start (default zeros).
    patience : int, optional
        Also stop once the best repaired point has not improved for this many iterations
        (the integer problem keeps a duality gap, so ``tol`` alone rarely stops before
        ``max_iter``). Default: off.

    Returns
    -------
    SwitchingResult
        Best feasible repaired point, best dual value, final :math:`\mu`.

    Notes
    -----
    .. math::
        \mu^{(i+1)} = \Big[\mu^{(i)} + \frac{\eta_0}{\sqrt i}\big(u(x(\mu^{(i)})) - C\big)\Big]^+,
        \qquad u_\ell(x) = \sum_k\sum_{m\in\ell}a_{k,m}x_{k,m}

    Stop when :math:`P^\star-D^\star\le\epsilon(1+|P^\star|)` or :math:`i=i_{\max}`.
    Complexity :math:`O(i_{\max}KM)`. Source: papers.md §3.5(a) [R]; [wang2025switching] names
    the method only.
    """
    masked, res, cap, group = assignment_setup(cost, resource, capacity, eligible)
    k_dev, m_mod = masked.shape
    if np.any(cap < 0):
        empty = -np.ones(k_dev, dtype=int)
        return _finish(empty, masked, res, cap, group, np.zeros_like(cap), -np.inf, 0, False,
                       "infeasible: a capacity is negative, so even no participation violates it")
    mu = np.zeros_like(cap) if mu0 is None else np.maximum(np.asarray(mu0, dtype=float), 0.0)
    if step0 is None:
        beneficial = (masked < 0) & (res > 0)
        price = float(np.median(-masked[beneficial] / res[beneficial])) if beneficial.any() else 1.0
        viol0 = module_usage(_best_response(masked, res, mu, group)[0], res, group, cap.size) - cap
        step0 = price / max(float(np.max(np.abs(viol0))), 1e-300)
    best_module, best_primal, best_dual = -np.ones(k_dev, dtype=int), 0.0, -np.inf
    x_bar = np.zeros((k_dev, m_mod))
    seen: set[bytes] = set()
    converged, message, it, last_gain = False, f"reached max_iter={max_iter}", 0, 0
    for it in range(1, int(max_iter) + 1):
        module, vals = _best_response(masked, res, mu, group)
        usage = module_usage(module, res, group, cap.size)
        best_dual = max(best_dual, float(np.sum(vals) - mu @ cap))
        x_bar += (assignment_from_modules(module, m_mod) - x_bar) / it
        candidates = (module, modules_from_assignment(x_bar >= 0.5))  # vertex + rounded average
        for cand in candidates:
            key = cand.tobytes()
            if key in seen:  # iterates repeat as mu oscillates: repair each point once
                continue
            seen.add(key)
            cand = fill_slack(drop_violations(cand, masked, res, cap, group), masked, res, cap, group)
            val = assignment_objective(cand, masked)
            if val < best_primal:
                best_module, best_primal, last_gain = cand, val, it
        if best_primal - best_dual <= tol * (1.0 + abs(best_primal)):
            converged = True
            message = f"duality gap {best_primal - best_dual:.3g} <= tol after {it} iterations"
            break
        if patience is not None and it - last_gain >= patience:
            message = (f"no better repaired point for {patience} iterations (stopped after {it}; "
                       f"duality gap {best_primal - best_dual:.3g})")
            break
        mu = np.maximum(mu + step0 / np.sqrt(it) * (usage - cap), 0.0)
    return _finish(best_module, masked, res, cap, group, mu, best_dual, it, converged, message,
                   x_bar)


def switch_greedy(
    cost: ArrayLike,
    resource: ArrayLike,
    capacity: ArrayLike,
    eligible: ArrayLike | None = None,
) -> SwitchingResult:
    r"""Greedy switching baseline: each device takes its immediately best module, then repair.

    Parameters
    ----------
    cost, resource, capacity, eligible
        As in :func:`switch_dual_ascent`.

    Returns
    -------
    SwitchingResult
        ``mu`` zeros, ``dual_objective = -inf``, ``iterations = 0``.

    Notes
    -----
    .. math:: m_k = \arg\min_m c_{k,m}\ \text{if}\ \min_m c_{k,m} < 0\ \text{else idle},
        \ \text{then}\ \mathrm{repair}

    Source: papers.md §3.5 [B name, R interpretation: no dual coordination].
    """
    masked, res, cap, group = assignment_setup(cost, resource, capacity, eligible)
    module = _best_response(masked, res, np.zeros_like(cap), group)[0]
    module = fill_slack(drop_violations(module, masked, res, cap, group), masked, res, cap, group)
    return _finish(module, masked, res, cap, group, np.zeros_like(cap), -np.inf, 0, True,
                   "greedy best response, repaired")


def switch_one_shot(
    fixed_module: ArrayLike | None,
    cost: ArrayLike,
    resource: ArrayLike,
    capacity: ArrayLike,
    eligible: ArrayLike | None = None,
    participate: Literal["always", "if_beneficial"] = "always",
    **dual_kwargs: Any,
) -> tuple[SwitchingResult, np.ndarray]:
    r"""One-shot switching baseline: decide the modules once, keep them in later rounds.

    Parameters
    ----------
    fixed_module : array_like of int, shape (K,), or None
        Module kept by each device (``-1`` none). ``None`` (first round): decide now with
        :func:`switch_dual_ascent` and return the decision to be passed back next round.
    cost, resource, capacity, eligible
        As in :func:`switch_dual_ascent`.
    participate : {"always", "if_beneficial"}, default "always"
        Later rounds: every device with a kept module takes part, or only those whose kept
        module has :math:`c_{k,m_k}<0`. Either way the coupling is repaired by dropping
        (never by switching module).
    **dual_kwargs
        Passed to :func:`switch_dual_ascent` in the first round.

    Returns
    -------
    (SwitchingResult, numpy.ndarray of int, shape (K,))
        This round's subscription and the kept module per device.

    Notes
    -----
    .. math:: x_{k,m}(t) = \mathbb 1[m = m_k(0)]\ \text{(minus repair drops)}

    Source: papers.md §3.5 [B name, R interpretation].
    """
    if fixed_module is None:
        res = switch_dual_ascent(cost, resource, capacity, eligible, **dual_kwargs)
        return res, res.module
    masked, res_, cap, group = assignment_setup(cost, resource, capacity, eligible)
    kept = np.asarray(fixed_module, dtype=int)
    module = kept.copy()
    on = np.flatnonzero(module >= 0)
    val = masked[on, module[on]]
    bad = ~np.isfinite(val) | ((val >= 0) if participate == "if_beneficial" else False)
    module[on[bad]] = -1
    module = drop_violations(module, masked, res_, cap, group)
    return _finish(module, masked, res_, cap, group, np.zeros_like(cap), -np.inf, 0, True,
                   "one-shot: kept modules, repaired by dropping"), kept
