r"""Lyapunov virtual energy queues and the bound's per-round weights (pure numpy).

The long-term energy budget :math:`\frac1T\sum_t a_k(t)E_k(t) \le \bar E_k` is enforced by one
virtual queue per device, advanced once per round by :func:`step_queues`; the per-round
drift-plus-penalty problem (``airtune.allocation.split_fed.scheduling``) weighs each device's energy by
its backlog. The penalty is :math:`V\,\omega_t\,g(N_t)` with the bound weight
:func:`bound_weight` and a participation penalty such as :func:`g_without_replacement` or
:func:`g_inverse`; any callable ``g(num_selected, num_devices) -> float`` can replace them.

Source: papers.md §1.5 (weights :math:`\omega_t = \rho^{T-1-t}`, :math:`g`) and §1.6 (queues),
all [R]: our reconstruction of [wang2025sfl] (Neely's drift-plus-penalty), not the paper's
own equations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "EMPTY_ROUND_PENALTY",
    "WEIGHT_SHAPES",
    "EnergyQueues",
    "bound_weight",
    "g_inverse",
    "g_without_replacement",
    "rho_for_first_weight",
    "round_weight",
    "step_aggregate_queue",
    "step_queues",
]

EMPTY_ROUND_PENALTY = 1.0e6
r"""Finite stand-in for :math:`g(0) = \infty` (a round that trains nobody).

Both built-in penalties equal 1 at :math:`N = 1` and lie in :math:`[0, 1]` for
:math:`N \ge 1`, so :math:`10^6` makes an empty round far worse than any non-empty one while
keeping objectives finite and comparable."""


@dataclass(frozen=True, eq=False)
class EnergyQueues:
    r"""Virtual energy-queue backlogs :math:`Q_k(t) \ge 0`, one per device (immutable).

    Attributes
    ----------
    backlog_j : numpy.ndarray, shape (K,)
        :math:`Q_k(t)` in J (read-only).
    """

    backlog_j: np.ndarray

    def __post_init__(self) -> None:
        q = np.array(self.backlog_j, dtype=float)
        if q.ndim != 1 or not np.all(np.isfinite(q)) or np.any(q < 0):
            raise ValueError(
                f"backlog_j must be a finite, non-negative array of shape (K,); got shape "
                f"{q.shape}{' with negative or non-finite entries' if q.ndim == 1 else ''}; "
                "start from EnergyQueues.zeros(K)"
            )
        q.setflags(write=False)
        object.__setattr__(self, "backlog_j", q)

    @classmethod
    def zeros(cls, num_devices: int) -> EnergyQueues:
        r""":math:`Q_k(0) = 0` for :math:`K` devices."""
        return cls(np.zeros(int(num_devices)))

    @property
    def num_devices(self) -> int:
        """Number of devices :math:`K`."""
        return int(self.backlog_j.shape[0])


def step_queues(
    queues: EnergyQueues,
    energy_j: ArrayLike,
    scheduled: ArrayLike,
    budget_j: ArrayLike,
) -> EnergyQueues:
    r"""Advance every virtual energy queue by one round.

    Parameters
    ----------
    queues : EnergyQueues
        :math:`Q_k(t)`.
    energy_j : float or array_like, shape (K,)
        Energy :math:`E_k(t)` in J a device spends if scheduled this round (ignored where not
        scheduled, so ``inf``/``nan`` there are harmless).
    scheduled : array_like of bool, shape (K,)
        :math:`a_k(t)`.
    budget_j : float or array_like, shape (K,)
        Per-round energy budget :math:`\bar E_k` in J, >= 0.

    Returns
    -------
    EnergyQueues
        :math:`Q_k(t+1)`; the input is not modified.

    Notes
    -----
    .. math:: Q_k(t+1) = \max\{Q_k(t) + a_k(t) E_k(t) - \bar E_k,\ 0\}

    Source: papers.md §1.6 [R].
    """
    q = queues.backlog_j
    sel = np.broadcast_to(np.asarray(scheduled, dtype=bool), q.shape)
    spent = np.where(sel, np.broadcast_to(np.asarray(energy_j, dtype=float), q.shape), 0.0)
    budget = np.broadcast_to(np.asarray(budget_j, dtype=float), q.shape)
    return EnergyQueues(np.maximum(q + spent - budget, 0.0))


def step_aggregate_queue(
    queue: EnergyQueues,
    energy_j: ArrayLike,
    scheduled: ArrayLike,
    budget_j: ArrayLike,
) -> EnergyQueues:
    r"""Advance the single queue of the *aggregate* long-term energy constraint by one round.

    Parameters
    ----------
    queue : EnergyQueues
        :math:`Q(t)`, shape (1,).
    energy_j : float or array_like, shape (K,)
        Energy :math:`E_k(t)` in J of each device if scheduled (ignored where not scheduled).
    scheduled : array_like of bool, shape (K,)
        :math:`a_k(t)`.
    budget_j : float or array_like, shape (K,)
        Per-device budgets :math:`\bar E_k` in J; the aggregate budget is their sum.

    Returns
    -------
    EnergyQueues
        :math:`Q(t+1)`, shape (1,).

    Notes
    -----
    The constraint :math:`\frac1T\sum_t\sum_k a_k(t)E_k(t) \le \sum_k \bar E_k` (one
    "long-term constraint", as the abstract's singular reads) has one virtual queue

    .. math:: Q(t+1) = \max\{Q(t) + \textstyle\sum_k a_k(t)E_k(t) - \sum_k \bar E_k,\ 0\},

    and in the per-round problem every device's energy is weighed by the same :math:`Q(t)`.
    Source: papers.md §1.6 names it as the alternative [?]; the form is our reconstruction.
    """
    if queue.num_devices != 1:
        raise ValueError(f"the aggregate constraint has one queue; got {queue.num_devices}")
    sel = np.asarray(scheduled, dtype=bool)
    spent = np.where(sel, np.broadcast_to(np.asarray(energy_j, dtype=float), sel.shape), 0.0)
    total_budget = float(np.sum(np.broadcast_to(np.asarray(budget_j, dtype=float), sel.shape)))
    return EnergyQueues(np.maximum(queue.backlog_j + float(spent.sum()) - total_budget, 0.0))


WEIGHT_SHAPES = ("geometric", "uniform", "linear")
r"""Names of the round-weight shapes :math:`\omega_t` of :func:`round_weight`."""


def rho_for_first_weight(first_weight: float, num_rounds: int) -> float:
    r"""The contraction :math:`\rho` whose geometric weights start at ``first_weight``.

    .. math:: \rho = \omega_0^{1/(T-1)},\qquad\text{so}\quad \rho^{T-1} = \omega_0

    Our choice: tying :math:`\rho` to the horizon keeps the shape of
    :math:`\omega_t = \rho^{T-1-t}` the same at any :math:`T` (a fixed :math:`\rho = 0.95`
    puts almost all the weight on the last ~60 rounds of 400, on all 12 of a 12-round run).
    """
    if not 0.0 < first_weight <= 1.0:
        raise ValueError(f"first_weight={first_weight} must lie in (0, 1]; use e.g. 0.1")
    if num_rounds < 1:
        raise ValueError(f"num_rounds={num_rounds} must be >= 1")
    return 1.0 if num_rounds == 1 else float(first_weight ** (1.0 / (num_rounds - 1)))


def round_weight(round_idx: int, num_rounds: int, shape: str, rho: float = 1.0) -> float:
    r"""Weight :math:`\omega_t` of round :math:`t` in the bound's participation term.

    Parameters
    ----------
    round_idx : int
        Round :math:`t`, :math:`0 \le t < T`.
    num_rounds : int
        Horizon :math:`T`.
    shape : {"geometric", "uniform", "linear"}
        ``"geometric"``: :math:`\rho^{T-1-t}` (:func:`bound_weight`, papers.md §1.5's contraction
        form); ``"uniform"``: 1 (every round alike, what :math:`\rho = 1` gives);
        ``"linear"``: :math:`(t+1)/T`.
    rho : float, default 1.0
        Contraction :math:`\rho \in (0, 1]` of ``"geometric"`` (ignored otherwise).

    Returns
    -------
    float
        :math:`\omega_t \in (0, 1]`, non-decreasing in :math:`t`, 1 at :math:`t = T-1`.

    Notes
    -----
    The abstract says only that the bound "reveals the weighted impact of the number of edge
    devices participating ... over all rounds" [S]; every shape here is our reconstruction [R]
    (papers.md §1.5 derives the geometric one from a contraction factor; ``linear`` is the
    slower-growing alternative of a non-convex, averaged bound).
    """
    if not 0 <= round_idx < num_rounds:
        raise ValueError(f"round_idx={round_idx} must lie in [0, num_rounds={num_rounds})")
    if shape == "geometric":
        return bound_weight(round_idx, num_rounds, rho)
    if shape == "uniform":
        return 1.0
    if shape == "linear":
        return (round_idx + 1) / num_rounds
    raise ValueError(f"shape={shape!r} is not a round-weight shape; use one of {WEIGHT_SHAPES}")


def bound_weight(round_idx: int, num_rounds: int, rho: float) -> float:
    r"""Weight of round :math:`t` in the convergence bound, :math:`\omega_t = \rho^{T-1-t}`.

    Parameters
    ----------
    round_idx : int
        Round :math:`t`, :math:`0 \le t < T`.
    num_rounds : int
        Horizon :math:`T`.
    rho : float
        Contraction factor :math:`\rho \in (0, 1]` (1 weighs all rounds equally).

    Returns
    -------
    float
        :math:`\omega_t \in (0, 1]`, growing with :math:`t` (late rounds matter more).

    Notes
    -----
    .. math:: \omega_t = \rho^{\,T-1-t}

    Source: papers.md §1.5 [R].
    """
    if not 0.0 < rho <= 1.0:
        raise ValueError(f"rho={rho} must lie in (0, 1]; use e.g. 0.99")
    if not 0 <= round_idx < num_rounds:
        raise ValueError(f"round_idx={round_idx} must lie in [0, num_rounds={num_rounds})")
    return float(rho ** (num_rounds - 1 - round_idx))


def g_without_replacement(
    num_selected: int, num_devices: int, empty_penalty: float = EMPTY_ROUND_PENALTY
) -> float:
    r"""Sampling-variance factor of :math:`N` of :math:`K` devices drawn without replacement.

    Parameters
    ----------
    num_selected : int
        :math:`N`, :math:`0 \le N \le K`.
    num_devices : int
        :math:`K \ge 1`.
    empty_penalty : float, default EMPTY_ROUND_PENALTY
        Value returned for :math:`N = 0` (the formula is infinite there).

    Returns
    -------
    float
        :math:`g(N, K) \in [0, 1]` for :math:`N \ge 1` (1 at :math:`N = 1`, 0 at
        :math:`N = K`); ``empty_penalty`` for :math:`N = 0`.

    Notes
    -----
    .. math:: g(N, K) = \frac{K - N}{N (K - 1)}\quad (K = 1:\ g(1, 1) = 0)

    Source: papers.md §1.5 [R].
    """
    n, k = int(num_selected), int(num_devices)
    if not 0 <= n <= k:
        raise ValueError(f"num_selected={n} must lie in [0, num_devices={k}]")
    if n == 0:
        return float(empty_penalty)
    if k == 1:
        return 0.0
    return (k - n) / (n * (k - 1))


def g_inverse(
    num_selected: int, num_devices: int | None = None, empty_penalty: float = EMPTY_ROUND_PENALTY
) -> float:
    r"""Participation penalty :math:`g(N) = 1/N`.

    Parameters
    ----------
    num_selected : int
        :math:`N \ge 0`.
    num_devices : int, optional
        :math:`K`, unused (accepted so that ``g(N, K)`` callables are interchangeable).
    empty_penalty : float, default EMPTY_ROUND_PENALTY
        Value returned for :math:`N = 0`.

    Returns
    -------
    float
        :math:`1/N` for :math:`N \ge 1`; ``empty_penalty`` for :math:`N = 0`.

    Notes
    -----
    .. math:: g(N) = \frac1N

    Source: papers.md §1.5 [R].
    """
    n = int(num_selected)
    if n < 0:
        raise ValueError(f"num_selected={n} must be >= 0")
    return float(empty_penalty) if n == 0 else 1.0 / n
