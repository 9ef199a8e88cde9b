r"""Transmit power control of the switching paradigm: the per-device solvers (vectorised).

Paper 3 [wang2025switching] solves its power subproblem "by interior point"; its equations were
not readable (papers.md §0), so this is the **[R] reconstruction** of papers.md §3.5(c). Each
device :math:`k` minimises :math:`f_k(p) = V\,G_k(q_k(p)) + Q_k\,pS_k/R_k(p)` over
:math:`[p^{\min}_k, p^{\max}_k]`; the problem data, the PPP outage :math:`q_k`, the rate models
and the deadline floor :math:`p^{\min}_k` are defined in :mod:`airtune.allocation.switching.power_problem`
(see its module docstring; its names are re-exported here).

The outage falls with :math:`p` in an S-shape and the energy rises, so :math:`f_k` can have
two local minima (one at the lower end). :func:`solve_power` therefore scans a coarse
per-device grid (``grid_points``, geometric towards :math:`p^{\min}`), then refines by
golden-section search on the two grid cells around the best grid point, all devices at once;
the refined point replaces the grid point only if it is no worse. Stopping rule: every
bracket :math:`\le \mathrm{tol}\cdot p^{\max}_k` or ``max_iter``.
:func:`solve_power_scipy` is the reference used by the tests: SciPy ``trust-constr`` (whose
bound handling is a log-barrier interior-point method, the paper's "interior point") or
bounded Brent; it loops over devices and is meant for small :math:`K` only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from airtune.allocation.switching.power_problem import (
    PowerProblem,
    deadline_min_power_w,
    outage,
    power_objective,
)

__all__ = [
    "PowerResult",
    "solve_power",
    "solve_power_scipy",
]

_INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618...


@dataclass(frozen=True, eq=False)
class PowerResult:
    r"""Outcome of :func:`solve_power` / :func:`solve_power_scipy` (never raised).

    Attributes
    ----------
    power_w : numpy.ndarray, shape (K,)
        :math:`p_k` in W (0 for inactive devices; :math:`p^{\max}_k` where infeasible).
    objective : numpy.ndarray, shape (K,)
        :math:`f_k(p_k)`.
    iterations : int
        Golden-section iterations (shared by all devices; scipy: the largest per device).
    converged : bool
        Every device met the stopping rule.
    feasible : numpy.ndarray of bool, shape (K,)
        :math:`p^{\min}_k \le p^{\max}_k` and the deadline is reachable.
    outage : numpy.ndarray, shape (K,)
        :math:`q_k(p_k)`.
    message : str
        Termination reason.
    """

    power_w: np.ndarray
    objective: np.ndarray
    iterations: int
    converged: bool
    feasible: np.ndarray
    outage: np.ndarray
    message: str

    def __post_init__(self) -> None:
        for name in ("power_w", "objective", "feasible", "outage"):
            arr = np.array(getattr(self, name), dtype=bool if name == "feasible" else float)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def total_objective(self) -> float:
        r""":math:`\sum_k f_k(p_k)`."""
        return float(np.sum(self.objective))


def _bounds(problem: PowerProblem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, ok = deadline_min_power_w(problem)
    hi = np.asarray(problem.max_power_w)
    lo = np.minimum(lo, hi)  # infeasible devices: clamp, handled by the caller
    return lo, hi, ok


def _finish(problem: PowerProblem, p: np.ndarray, iters: int, converged: bool, ok: np.ndarray,
            what: str) -> PowerResult:
    act = problem.active
    p = np.where(act, np.where(ok, p, np.asarray(problem.max_power_w)), 0.0)
    n_bad = int(np.sum(act & ~ok))
    msg = f"{what}; {n_bad} device(s) infeasible (deadline unreachable: p_max used)" if n_bad \
        else what
    return PowerResult(power_w=p, objective=power_objective(problem, p), iterations=iters,
                       converged=converged, feasible=ok | ~act,
                       outage=np.where(act, outage(problem, p), 0.0), message=msg)


def solve_power(
    problem: PowerProblem,
    grid_points: int = 256,
    tol: float = 1e-10,
    max_iter: int = 200,
) -> PowerResult:
    r"""Vectorised bounded scalar minimisation of every device's :math:`f_k` (module docstring).

    Parameters
    ----------
    problem : PowerProblem
        Subproblem data.
    grid_points : int, default 256
        Coarse-grid size per device: :math:`p^{\min}_k` plus points geometric in
        :math:`p - p^{\min}_k` from :math:`10^{-10}(p^{\max}_k-p^{\min}_k)` to the full range.
    tol : float, default 1e-10
        Golden-section stopping rule: bracket :math:`\le \mathrm{tol}\cdot p^{\max}_k`.
    max_iter : int, default 200
        Golden-section iteration cap.

    Returns
    -------
    PowerResult
        ``converged`` is ``False`` only when ``max_iter`` cut the search.

    Notes
    -----
    Golden section on :math:`[p_{j-1}, p_{j+1}]` around the best grid point :math:`p_j`,
    :math:`\varphi = (\sqrt5-1)/2`:

    .. math::
        c = b - \varphi(b-a),\ d = a + \varphi(b-a);\quad
        f(c) < f(d) \Rightarrow b \leftarrow d\ \text{else}\ a \leftarrow c

    Complexity :math:`O(K(n_{\rm grid} + \log(1/\mathrm{tol})))`. Source: papers.md §3.5(c) [R].
    """
    lo, hi, ok = _bounds(problem)
    k_dev, n = problem.num_devices, max(int(grid_points), 3)
    t = np.concatenate(([0.0], np.geomspace(1e-10, 1.0, n - 1)))  # (n,)
    grid = lo[:, None] + (hi - lo)[:, None] * t[None, :]  # (K, n)
    f_grid = power_objective(problem, grid)
    j = np.argmin(f_grid, axis=1)  # (K,)
    rows = np.arange(k_dev)
    best_p, best_f = grid[rows, j], f_grid[rows, j]
    a = grid[rows, np.maximum(j - 1, 0)]
    b = grid[rows, np.minimum(j + 1, n - 1)]
    c, d = b - _INV_PHI * (b - a), a + _INV_PHI * (b - a)
    fc, fd = power_objective(problem, c), power_objective(problem, d)
    width_tol = tol * hi
    it = 0
    while it < max_iter and np.any(b - a > width_tol):
        it += 1
        left = fc < fd  # minimum in [a, d]
        a, b = np.where(left, a, c), np.where(left, d, b)
        c_new, d_new = b - _INV_PHI * (b - a), a + _INV_PHI * (b - a)
        # reuse one interior point per device; evaluate the other
        new_pt = np.where(left, c_new, d_new)
        f_new = power_objective(problem, new_pt)
        fc, fd, c, d = (np.where(left, f_new, fd), np.where(left, fc, f_new),
                        np.where(left, c_new, d), np.where(left, c, d_new))
    mid = 0.5 * (a + b)
    f_mid = power_objective(problem, mid)
    better = f_mid < best_f
    p = np.where(better, mid, best_p)
    converged = not np.any(b - a > width_tol)
    what = f"golden section: {it} iterations" + ("" if converged else " (max_iter reached)")
    return _finish(problem, p, it, converged, ok, what)


def solve_power_scipy(
    problem: PowerProblem,
    method: Literal["trust-constr", "bounded"] = "trust-constr",
    starts: int = 3,
    tol: float = 1e-12,
) -> PowerResult:
    r"""Reference solver via SciPy, one device at a time, multi-start (tests only).

    Parameters
    ----------
    problem : PowerProblem
        Subproblem data.
    method : {"trust-constr", "bounded"}, default "trust-constr"
        ``"trust-constr"``: ``scipy.optimize.minimize(method="trust-constr")``, an
        interior-point (log-barrier) method for the bounds. ``"bounded"``:
        ``scipy.optimize.minimize_scalar(method="bounded")`` (Brent) on each of ``starts``
        equal sub-intervals of :math:`z`.
    starts : int, default 3
        trust-constr: start points geometric in :math:`z = (p - p^{\min})/(p^{\max}-p^{\min})`
        from :math:`10^{-4}` to :math:`1-10^{-4}`; bounded: sub-intervals. Best kept.
    tol : float, default 1e-12
        ``xtol``/``gtol`` (trust-constr) or ``xatol`` (bounded), in :math:`z`.

    Returns
    -------
    PowerResult
        ``iterations`` is the largest per-device iteration count.

    Notes
    -----
    ``trust-constr`` turns :math:`p^{\min}_k \le p \le p^{\max}_k` into inequality
    constraints and solves the barrier problems
    :math:`\min f_k(p) - \mu\,[\ln(p - p^{\min}_k) + \ln(p^{\max}_k - p)]` for
    :math:`\mu \to 0` (its ``tr_interior_point`` method). The objective is scaled by its value
    at the midpoint; both ends are also evaluated (a barrier method only approaches them).
    A Python loop over devices: for small :math:`K` only.
    Source: papers.md §3.5(c) [R] (the paper's "interior point" [wang2025switching]).
    """
    import warnings

    from scipy.optimize import Bounds, minimize, minimize_scalar

    lo, hi, ok = _bounds(problem)
    p_out = np.where(problem.active, lo, 0.0)
    max_it, all_ok = 0, True
    base = p_out.copy()
    for k in np.flatnonzero(problem.active & ok & (hi > lo)):
        def f_k(z: float, k: np.intp = k) -> float:
            pv = base.copy()
            pv[k] = lo[k] + (hi[k] - lo[k]) * float(np.clip(z, 0.0, 1.0))
            return float(power_objective(problem, pv)[k])

        scale = max(abs(f_k(0.5)), 1e-300)
        cands = [(f_k(0.0) / scale, 0.0), (f_k(1.0) / scale, 1.0)]
        if method == "bounded":
            edges = np.linspace(0.0, 1.0, int(starts) + 1)
            for a, b in zip(edges[:-1], edges[1:]):
                res = minimize_scalar(lambda z: f_k(z) / scale, bounds=(a, b), method="bounded",
                                      options={"xatol": tol, "maxiter": 500})
                max_it = max(max_it, int(res.nfev))
                all_ok &= bool(res.success)
                cands.append((float(res.fun), float(res.x)))
        else:
            for z0 in np.geomspace(1e-4, 1.0 - 1e-4, int(starts)):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # quasi-Newton on a linear part
                    res = minimize(lambda z: f_k(z[0]) / scale, np.array([z0]),
                                   method="trust-constr", bounds=Bounds([0.0], [1.0]),
                                   options={"xtol": tol, "gtol": tol, "maxiter": 1000})
                max_it = max(max_it, int(res.nit))
                all_ok &= bool(res.success) or res.status in (1, 2)
                cands.append((float(res.fun), float(np.clip(res.x[0], 0.0, 1.0))))
        p_out[k] = lo[k] + (hi[k] - lo[k]) * min(cands)[1]
    return _finish(problem, p_out, max_it, all_ok, ok, f"scipy {method} reference")
