r"""Vectorised bracketing root finders: bisection and the Illinois variant of false position.

Used by Algorithm 1 of the switching paradigm (:mod:`airtune.allocation.switching.bandwidth_tiers`),
which needs, for many devices at once, the root of a monotone function on a bracket
:math:`[a,b]` with :math:`g(a)` and :math:`g(b)` of opposite signs.

* ``"bisection"``: :math:`c=(a+b)/2`; the bracket halves every step (linear convergence,
  :math:`\log_2((b-a)/x_{\rm tol})` steps). This is the method the paper names.
* ``"illinois"``: :math:`c=b-g(b)\,(b-a)/(g(b)-g(a))`, and when the same end of the bracket is
  replaced twice in a row the function value kept at the other end is halved
  [dowell1971illinois]. The root stays bracketed (as safe as bisection), convergence is
  superlinear (order about 1.44), so a smooth root needs a handful of steps instead of ~45.

Pure functions; every element has its own bracket and stops on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, cast

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["BracketMethod", "bracket_root", "false_position_point"]

BracketMethod = Literal["bisection", "illinois"]


def false_position_point(lo: ArrayLike, hi: ArrayLike, g_lo: ArrayLike, g_hi: ArrayLike) -> np.ndarray:
    r"""Secant point of the bracket, :math:`c=b-g_b(b-a)/(g_b-g_a)`; the midpoint where that
    point is not strictly inside :math:`(a,b)` (equal values, overflow)."""
    lo, hi, g_lo, g_hi = (np.asarray(v, dtype=float) for v in (lo, hi, g_lo, g_hi))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        c = hi - g_hi * (hi - lo) / (g_hi - g_lo)
    inside = np.isfinite(c) & (c > np.minimum(lo, hi)) & (c < np.maximum(lo, hi))
    return cast(np.ndarray, np.where(inside, c, 0.5 * (lo + hi)))


def bracket_root(
    g: Callable[[np.ndarray, np.ndarray], np.ndarray],
    lo: np.ndarray,
    hi: np.ndarray,
    g_lo: np.ndarray,
    g_hi: np.ndarray,
    method: BracketMethod = "bisection",
    xtol: float = 1e-13,
    ftol: float = 0.0,
    max_iter: int = 200,
) -> tuple[np.ndarray, int, bool]:
    r"""Roots of :math:`g` on the brackets :math:`[\mathrm{lo}_i,\mathrm{hi}_i]`, all elements at once.

    Parameters
    ----------
    g : callable ``g(x, idx)``
        Values of the elements ``idx`` (int array) at the points ``x`` (same length).
    lo, hi : numpy.ndarray, shape (n,)
        Bracket ends with ``g_lo`` and ``g_hi`` of opposite signs (or one of them 0).
    g_lo, g_hi : numpy.ndarray, shape (n,)
        :math:`g` at the ends.
    method : {"bisection", "illinois"}
        Next point: midpoint, or Illinois false position (module docstring).
    xtol : float
        An element stops when :math:`|\mathrm{hi}-\mathrm{lo}|\le x_{\rm tol}`.
    ftol : float
        ... or when :math:`|g(c)|\le f_{\rm tol}` at its latest point :math:`c`.
    max_iter : int
        Steps at most (each step evaluates :math:`g` once on the elements still open).

    Returns
    -------
    (x, iterations, converged)
        The latest point where ``|g| <= ftol``, else the midpoint of the final bracket;
        the number of steps; whether every element met a stopping rule.
    """
    lo, hi = np.array(lo, dtype=float), np.array(hi, dtype=float)
    g_lo, g_hi = np.array(g_lo, dtype=float), np.array(g_hi, dtype=float)
    n = lo.shape[0]
    done = np.zeros(n, bool)
    x = 0.5 * (lo + hi)
    side = np.zeros(n, dtype=int)  # end replaced last: -1 lo, +1 hi, 0 none yet
    it = 0
    while True:
        open_ = ~done & (np.abs(hi - lo) > xtol)
        if not open_.any() or it >= max_iter:
            break
        it += 1
        idx = np.flatnonzero(open_)
        a, b, ga, gb = lo[idx], hi[idx], g_lo[idx], g_hi[idx]
        c = 0.5 * (a + b) if method == "bisection" else false_position_point(a, b, ga, gb)
        gc = np.asarray(g(c, idx), dtype=float)
        hit = np.abs(gc) <= ftol
        same_as_lo = np.sign(gc) == np.sign(ga)
        new_lo = ~hit & same_as_lo
        new_hi = ~hit & ~same_as_lo
        if method == "illinois":  # the kept end's value is halved when one end moves twice
            g_hi[idx[new_lo & (side[idx] == -1)]] *= 0.5
            g_lo[idx[new_hi & (side[idx] == 1)]] *= 0.5
        lo[idx[new_lo]], g_lo[idx[new_lo]] = c[new_lo], gc[new_lo]
        hi[idx[new_hi]], g_hi[idx[new_hi]] = c[new_hi], gc[new_hi]
        side[idx[new_lo]], side[idx[new_hi]] = -1, 1
        x[idx[hit]] = c[hit]
        done[idx[hit]] = True
    open_ = ~done
    x[open_] = 0.5 * (lo[open_] + hi[open_])
    converged = bool(np.all(done | (np.abs(hi - lo) <= xtol)))
    return x, it, converged
