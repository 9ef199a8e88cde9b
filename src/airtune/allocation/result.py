r"""The result record every allocator returns (scipy ``OptimizeResult`` style).

Non-convergence is data, not an exception: a solver that stops early returns an
:class:`Allocation` with ``converged=False`` and a ``message`` saying why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from airtune.allocation.exchange import Directives

__all__ = ["Allocation"]


@dataclass(frozen=True, eq=False)
class Allocation:
    r"""Who transmits this round, on how much bandwidth, at what power.

    Attributes
    ----------
    selected : numpy.ndarray of bool, shape (K,)
        Scheduled devices :math:`a_k \in \{0, 1\}`.
    bandwidth_hz : numpy.ndarray, shape (K,)
        Uplink bandwidth :math:`b_k` in Hz (0 where not selected).
    power_w : numpy.ndarray, shape (K,)
        Uplink transmit power :math:`p_k` in W (0 where not selected).
    objective : float
        Value of the solver's objective at the returned point (0.0 for heuristics without one).
    converged : bool
        Whether the solver's stopping rule was met.
    iterations : int
        Iterations the solver ran (0 for closed-form rules).
    message : str
        Human-readable termination reason.
    directives : Directives
        What the planner directs the strategy to do (keep ratios, module subscriptions); the
        only part of the plan a strategy reads besides ``selected`` (``allocation/exchange.py``).
    extra : dict
        Solver diagnostics and the planner's own bookkeeping for its ``observe`` (dual variables,
        stopping reasons, planned latency); logged, never read by a strategy.
    """

    selected: np.ndarray
    bandwidth_hz: np.ndarray
    power_w: np.ndarray
    objective: float
    converged: bool
    iterations: int
    message: str
    extra: dict[str, Any] = field(default_factory=dict)
    directives: Directives = field(default_factory=Directives)

    def __post_init__(self) -> None:
        sel = np.array(self.selected, dtype=bool)
        bw = np.array(self.bandwidth_hz, dtype=float)
        pw = np.array(self.power_w, dtype=float)
        if not sel.shape == bw.shape == pw.shape or sel.ndim != 1:
            raise ValueError(
                "Allocation arrays must all have shape (K,): got "
                f"selected {sel.shape}, bandwidth_hz {bw.shape}, power_w {pw.shape}"
            )
        for name, arr in (("selected", sel), ("bandwidth_hz", bw), ("power_w", pw)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "objective", float(self.objective))
        object.__setattr__(self, "converged", bool(self.converged))
        object.__setattr__(self, "iterations", int(self.iterations))

    @property
    def num_devices(self) -> int:
        """Number of devices :math:`K`."""
        return int(self.selected.shape[0])

    @property
    def num_selected(self) -> int:
        r""":math:`N = \sum_k a_k`."""
        return int(np.count_nonzero(self.selected))

    def constraint_violations(
        self, total_bandwidth_hz: float, max_power_w: ArrayLike, rtol: float = 1e-9
    ) -> list[str]:
        r"""List the violated per-round constraints (empty when feasible).

        Parameters
        ----------
        total_bandwidth_hz : float
            Total uplink bandwidth :math:`B` in Hz.
        max_power_w : float or array_like, shape (K,)
            Per-device power limit :math:`p^{\max}_k` in W.
        rtol : float, default 1e-9
            Relative tolerance on both limits.

        Returns
        -------
        list of str
            One line per violated constraint.

        Notes
        -----
        .. math::
            \sum_k a_k b_k \le B,\quad b_k \ge 0,\quad 0 \le p_k \le p^{\max}_k,\quad
            b_k = p_k = 0 \text{ if } a_k = 0
        """
        problems: list[str] = []
        p_max = np.broadcast_to(np.asarray(max_power_w, dtype=float), self.power_w.shape)
        used_hz = float(np.sum(self.bandwidth_hz[self.selected]))
        if used_hz > total_bandwidth_hz * (1.0 + rtol):
            problems.append(
                f"bandwidth sum {used_hz:.6g} Hz exceeds total {total_bandwidth_hz:.6g} Hz"
            )
        if np.any(self.bandwidth_hz < 0) or not np.all(np.isfinite(self.bandwidth_hz)):
            problems.append("a bandwidth is negative or not finite")
        if np.any(self.power_w < 0) or np.any(self.power_w > p_max * (1.0 + rtol)):
            problems.append("a power lies outside [0, max_power_w]")
        idle = ~self.selected
        if np.any(self.bandwidth_hz[idle] != 0) or np.any(self.power_w[idle] != 0):
            problems.append("an unselected device has nonzero bandwidth or power")
        return problems
