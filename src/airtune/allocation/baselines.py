r"""Baseline schedulers and the equal-split allocator (no optimisation).

Schedulers pick :math:`n` of :math:`K` devices. Each exists twice: a plain function with only
the arguments it needs (``schedule_random`` ...) and a registered wrapper with the common
keyword-only signature ::

    SCHEDULERS.get(name)(*, rng, round_idx, channel_gain, n) -> bool mask (K,)

so that any scheduler can be swapped in by name. The allocator ::

    ALLOCATORS.get("equal")(*, rng, round_idx, channel_gain, max_power_w,
                            total_bandwidth_hz, n, scheduler, **context) -> Allocation

composes a scheduler with :func:`equal_bandwidth` and :func:`max_power`.

Source: papers.md §1.7 [R] recommends "random scheduling with equal bandwidth" and "greedy
best-channel scheduling" as baselines; round robin is the usual fair baseline. None of these
is a seed paper's own algorithm.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from airtune.allocation.result import Allocation
from airtune.registry import ALLOCATORS, SCHEDULERS

__all__ = [
    "allocate_equal",
    "equal_bandwidth",
    "max_power",
    "schedule_best_channel",
    "schedule_random",
    "schedule_round_robin",
]


def _check_n(n: int, num_devices: int) -> int:
    if not 0 <= int(n) <= int(num_devices):
        raise ValueError(
            f"n={n} devices per round must lie in [0, num_devices={num_devices}]; "
            "lower n or add devices"
        )
    return int(n)


# --------------------------------------------------------------------------- schedulers


def schedule_random(rng: np.random.Generator, num_devices: int, n: int) -> np.ndarray:
    r"""Select :math:`n` devices uniformly at random without replacement.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    num_devices : int
        Number of devices :math:`K`.
    n : int
        Devices to select, :math:`0 \le n \le K`.

    Returns
    -------
    numpy.ndarray of bool, shape (K,)
        Mask with exactly :math:`n` ``True`` entries.

    Notes
    -----
    .. math:: \mathcal S \sim \mathcal U\big\{S \subseteq \{1..K\} : |S| = n\big\}
    """
    n = _check_n(n, num_devices)
    mask = np.zeros(int(num_devices), dtype=bool)
    mask[rng.choice(int(num_devices), size=n, replace=False)] = True
    return mask


def schedule_round_robin(round_idx: int, num_devices: int, n: int) -> np.ndarray:
    r"""Select the next :math:`n` devices in index order, wrapping around.

    Parameters
    ----------
    round_idx : int
        Round :math:`t \ge 0`.
    num_devices : int
        Number of devices :math:`K`.
    n : int
        Devices to select, :math:`0 \le n \le K`.

    Returns
    -------
    numpy.ndarray of bool, shape (K,)
        Mask with exactly :math:`n` ``True`` entries; every device is selected at least once
        in any :math:`\lceil K/n \rceil` consecutive rounds.

    Notes
    -----
    .. math:: \mathcal S_t = \{ (n t + i) \bmod K : i = 0, \dots, n-1 \}
    """
    n = _check_n(n, num_devices)
    mask = np.zeros(int(num_devices), dtype=bool)
    if num_devices > 0:
        mask[(n * int(round_idx) + np.arange(n)) % int(num_devices)] = True
    return mask


def schedule_best_channel(channel_gain: ArrayLike, n: int) -> np.ndarray:
    r"""Select the :math:`n` devices with the largest channel gain (ties: lower index first).

    Parameters
    ----------
    channel_gain : array_like, shape (K,)
        Channel power gain :math:`h_k` (dimensionless).
    n : int
        Devices to select, :math:`0 \le n \le K`.

    Returns
    -------
    numpy.ndarray of bool, shape (K,)
        Mask with exactly :math:`n` ``True`` entries.

    Notes
    -----
    .. math:: \mathcal S_t = \operatorname{arg\,top}_n\ h_k(t)
    """
    gain = np.asarray(channel_gain, dtype=float)
    n = _check_n(n, gain.shape[0])
    mask = np.zeros(gain.shape[0], dtype=bool)
    mask[np.argsort(-gain, kind="stable")[:n]] = True
    return mask


@SCHEDULERS.register("random")
def _random(
    *, rng: np.random.Generator, round_idx: int, channel_gain: ArrayLike, n: int
) -> np.ndarray:
    """Common-signature wrapper of :func:`schedule_random` (``round_idx`` unused)."""
    return schedule_random(rng, np.shape(channel_gain)[0], n)


@SCHEDULERS.register("round_robin")
def _round_robin(
    *, rng: np.random.Generator, round_idx: int, channel_gain: ArrayLike, n: int
) -> np.ndarray:
    """Common-signature wrapper of :func:`schedule_round_robin` (``rng`` unused)."""
    return schedule_round_robin(round_idx, np.shape(channel_gain)[0], n)


@SCHEDULERS.register("best_channel")
def _best_channel(
    *, rng: np.random.Generator, round_idx: int, channel_gain: ArrayLike, n: int
) -> np.ndarray:
    """Common-signature wrapper of :func:`schedule_best_channel` (ignores rng, round_idx)."""
    return schedule_best_channel(channel_gain, n)


_BUILTIN_SCHEDULERS = {
    "random": _random, "round_robin": _round_robin, "best_channel": _best_channel
}


# --------------------------------------------------------------------------- resources


def equal_bandwidth(selected: ArrayLike, total_bandwidth_hz: float) -> np.ndarray:
    r"""Split the total bandwidth equally among the selected devices.

    Parameters
    ----------
    selected : array_like of bool, shape (K,)
        Scheduled devices.
    total_bandwidth_hz : float
        Total uplink bandwidth :math:`B` in Hz, >= 0.

    Returns
    -------
    numpy.ndarray, shape (K,)
        :math:`b_k` in Hz; all zeros when nothing is selected.

    Notes
    -----
    .. math:: b_k = a_k \frac{B}{\sum_j a_j}
    """
    sel = np.asarray(selected, dtype=bool)
    count = int(np.count_nonzero(sel))
    if count == 0:
        return np.zeros(sel.shape)
    return np.where(sel, float(total_bandwidth_hz) / count, 0.0)


def max_power(selected: ArrayLike, max_power_w: ArrayLike) -> np.ndarray:
    r"""Every selected device transmits at its maximum power.

    Parameters
    ----------
    selected : array_like of bool, shape (K,)
        Scheduled devices.
    max_power_w : float or array_like, shape (K,)
        Power limit :math:`p^{\max}_k` in W.

    Returns
    -------
    numpy.ndarray, shape (K,)
        :math:`p_k` in W (0 where not selected).

    Notes
    -----
    .. math:: p_k = a_k\, p^{\max}_k
    """
    sel = np.asarray(selected, dtype=bool)
    return np.where(sel, np.broadcast_to(np.asarray(max_power_w, dtype=float), sel.shape), 0.0)


@ALLOCATORS.register("equal")
def allocate_equal(
    *,
    rng: np.random.Generator,
    round_idx: int,
    channel_gain: ArrayLike,
    max_power_w: ArrayLike,
    total_bandwidth_hz: float,
    n: int,
    scheduler: str,
    **context: object,
) -> Allocation:
    r"""Baseline allocation: a named scheduler, equal bandwidth split, maximum power.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness for the scheduler.
    round_idx : int
        Round :math:`t`.
    channel_gain : array_like, shape (K,)
        Channel power gain :math:`h_k(t)`.
    max_power_w : float or array_like, shape (K,)
        Power limit :math:`p^{\max}_k` in W.
    total_bandwidth_hz : float
        Total uplink bandwidth :math:`B` in Hz.
    n : int
        Devices per round.
    scheduler : str
        Name in ``airtune.registry.SCHEDULERS``: ``"random"``, ``"round_robin"`` or
        ``"best_channel"``.
    **context
        Further fields of the common allocator call (queues, payloads, noise, ...) that other
        allocators use; accepted so allocators are interchangeable, unused here.

    Returns
    -------
    Allocation
        ``objective=0.0`` (no objective), ``converged=True``, ``iterations=0``;
        ``extra={"scheduler": scheduler}``.

    Notes
    -----
    .. math::
        a = \mathrm{sched}(t, h),\quad b_k = a_k B / \textstyle\sum_j a_j,\quad
        p_k = a_k p^{\max}_k
    """
    # Built-in names resolve locally so this numpy-only path never imports the torch modules
    # that SCHEDULERS.get() loads to fill the other registries.
    schedule = _BUILTIN_SCHEDULERS.get(scheduler) or SCHEDULERS.get(scheduler)
    selected = schedule(rng=rng, round_idx=round_idx, channel_gain=channel_gain, n=n)
    return Allocation(
        selected=selected,
        bandwidth_hz=equal_bandwidth(selected, total_bandwidth_hz),
        power_w=max_power(selected, max_power_w),
        objective=0.0,
        converged=True,
        iterations=0,
        message=(
            f"equal split over {int(selected.sum())} devices chosen by '{scheduler}' "
            "(heuristic, no objective)"
        ),
        extra={"scheduler": scheduler},
    )
