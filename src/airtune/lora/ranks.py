r"""Heterogeneous LoRA ranks: which rank each device trains (pure NumPy, no torch, no config).

Devices differ in memory, so heterogeneous-rank strategies (HetLoRA, FlexLoRA, FLoRA,
FFA-LoRA with mixed ranks; papers.md §4.2–4.5) give device :math:`k` its own rank
:math:`r_k`. How the :math:`r_k` are drawn is a simulator choice, not a paper's [R]:

* ``uniform_rank``: :math:`r_k = r` for every device (homogeneous LoRA).
* ``tier``: :math:`r_k = \mathcal R_{(\min(t_k,\ |\mathcal R|-1))}`, the memory tier
  :math:`t_k\in\{0,1,2\}` of :class:`airtune.wireless.devices.DeviceProfiles` indexing the
  rank set sorted ascending (tier 0 = low memory = smallest rank; tiers beyond the set's
  length get its largest rank).
* ``list``: the explicit per-device list.
* ``random_set``: :math:`r_k \sim \mathcal U(\mathcal R)`, i.i.d.
* ``heavy_tail``: Zipf-like over the sorted set,
  :math:`P(r_k = \mathcal R_{(i)}) \propto (i+1)^{-s}` with :math:`s` = ``zipf_exponent``
  (1 by default: with :math:`\mathcal R=\{2,4,8\}`, 55 % of devices get rank 2, 27 % rank 4,
  18 % rank 8).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["RANK_MODES", "assign_device_ranks"]

RANK_MODES = ("uniform_rank", "tier", "list", "random_set", "heavy_tail")


def assign_device_ranks(
    mode: str,
    num_devices: int,
    rng: np.random.Generator,
    *,
    rank: int,
    rank_set: Sequence[int] = (2, 4, 8),
    rank_list: Sequence[int] | None = None,
    memory_tier: np.ndarray | None = None,
    zipf_exponent: float = 1.0,
) -> np.ndarray:
    r"""LoRA rank of every device.

    Parameters
    ----------
    mode : {"uniform_rank", "tier", "list", "random_set", "heavy_tail"}
        Rule (module docstring).
    num_devices : int
        :math:`K \ge 1`.
    rng : numpy.random.Generator
        Used by ``random_set`` and ``heavy_tail`` only (the runner passes
        ``airtune.experiment.seeds.rng(seed, "ranks")``).
    rank : int
        The shared rank of ``uniform_rank`` (``lora.rank``).
    rank_set : sequence of int
        :math:`\mathcal R`, ranks >= 1 (duplicates are dropped).
    rank_list : sequence of int, optional
        One rank per device for ``list``.
    memory_tier : numpy.ndarray of int, shape (K,), optional
        Device memory tiers (0 = low) for ``tier``.
    zipf_exponent : float
        :math:`s > 0` of ``heavy_tail``.

    Returns
    -------
    numpy.ndarray of int64, shape (K,)
        Ranks, each >= 1.

    Raises
    ------
    ValueError
        Unknown mode, missing or mis-sized inputs, ranks below 1.
    """
    K = int(num_devices)
    if K < 1:
        raise ValueError(f"num_devices must be >= 1; got {num_devices}.")
    if mode not in RANK_MODES:
        raise ValueError(f"unknown rank mode {mode!r}; choose one of {', '.join(RANK_MODES)}.")
    if mode == "uniform_rank":
        if rank < 1:
            raise ValueError(f"rank must be >= 1; got {rank}.")
        return np.full(K, int(rank), dtype=np.int64)
    if mode == "list":
        if rank_list is None or len(rank_list) != K:
            got = "none" if rank_list is None else f"{len(rank_list)} entries"
            raise ValueError(f"rank_list needs one rank per device ({K}); got {got}.")
        out = np.asarray(rank_list, dtype=np.int64)
        if (out < 1).any():
            raise ValueError(f"every rank must be >= 1; got {list(rank_list)}.")
        return out
    ranks = np.unique(np.asarray(rank_set, dtype=np.int64))  # sorted ascending, distinct
    if ranks.size == 0 or ranks[0] < 1:
        raise ValueError(f"rank_set must hold ranks >= 1; got {list(rank_set)}.")
    if mode == "tier":
        if memory_tier is None or np.shape(memory_tier) != (K,):
            raise ValueError(f"tier ranks need memory_tier of shape ({K},); got {np.shape(memory_tier)}.")
        tier = np.asarray(memory_tier, dtype=np.int64)
        if (tier < 0).any():
            raise ValueError(f"memory tiers must be >= 0; got {tier.tolist()}.")
        return ranks[np.minimum(tier, ranks.size - 1)]  # (K,)
    if mode == "random_set":
        return ranks[rng.integers(0, ranks.size, size=K)]
    if not zipf_exponent > 0:
        raise ValueError(f"zipf_exponent must be > 0; got {zipf_exponent}.")
    p = 1.0 / np.arange(1, ranks.size + 1, dtype=float) ** zipf_exponent
    return ranks[rng.choice(ranks.size, size=K, p=p / p.sum())]
