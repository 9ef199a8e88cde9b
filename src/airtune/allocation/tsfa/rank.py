r"""TSFA stage 1, offline: choose the structural LoRA rank [kim2025soft] (papers.md §2.6, [R]).

Minimises a configurable convergence-bound surrogate over a candidate grid under expected
channel statistics and a latency budget; the per-round online stage is in
:mod:`airtune.allocation.tsfa.solver`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from airtune.allocation.tsfa.deadline import min_max_latency
from airtune.allocation.tsfa.solver import per_device_array
from airtune.lora.soft_payload import IndexCoding, soft_payload_table

__all__ = ["RankBoundCoeffs", "RankChoice", "choose_rank"]

@dataclass(frozen=True)
class RankBoundCoeffs:
    r"""Coefficients of the offline rank criterion of :func:`choose_rank` [R].

    Attributes
    ----------
    rank_coeff : float, default 1.0
        :math:`c_r`: weight of the structural-rank term (:math:`1/r`, or the tail energy).
    sparsification_coeff : float, default 1.0
        :math:`c_\rho`: weight of the expected sparsification ratio forced by the budget.
    latency_coeff : float, default 0.0
        :math:`c_T`: weight of the expected round latency relative to :math:`\bar T`.
    require_full_rank : bool, default False
        Feasible only if all :math:`r` components fit the budget on average (otherwise: if at
        least one does, the online stage sparsifying the rest).
    """

    rank_coeff: float = 1.0
    sparsification_coeff: float = 1.0
    latency_coeff: float = 0.0
    require_full_rank: bool = False


@dataclass(frozen=True, eq=False)
class RankChoice:
    r"""Result of the offline stage: the rank and the table it was chosen from.

    All arrays have shape (R,), one entry per candidate rank (ascending).

    Attributes
    ----------
    rank : int
        Chosen structural rank (the smallest candidate when none is feasible).
    candidate_ranks : numpy.ndarray of int64
    expected_latency_s : numpy.ndarray
        :math:`\mathbb E[T \mid m = r]`: round latency when all components are sent.
    kept_components : numpy.ndarray of int64
        :math:`\bar m(r)`: most components whose expected latency meets :math:`\bar T` (0 if
        none).
    kept_latency_s : numpy.ndarray
        :math:`\mathbb E[T \mid \bar m(r)]` (of :math:`m = 1` when :math:`\bar m = 0`).
    rank_term, sparsification_term, latency_term, bound : numpy.ndarray
        The three terms of the criterion and their sum.
    feasible : numpy.ndarray of bool
    message : str
    """

    rank: int
    candidate_ranks: np.ndarray
    expected_latency_s: np.ndarray
    kept_components: np.ndarray
    kept_latency_s: np.ndarray
    rank_term: np.ndarray
    sparsification_term: np.ndarray
    latency_term: np.ndarray
    bound: np.ndarray
    feasible: np.ndarray
    message: str

    @property
    def any_feasible(self) -> bool:
        """Whether some candidate meets the latency budget."""
        return bool(self.feasible.any())

    def table(self) -> list[dict[str, float | int | bool]]:
        """One row per candidate rank (for logs and reports)."""
        cols = (
            "candidate_ranks", "expected_latency_s", "kept_components", "kept_latency_s",
            "rank_term", "sparsification_term", "latency_term", "bound", "feasible",
        )
        return [
            {c: getattr(self, c)[i].item() for c in cols} for i in range(len(self.candidate_ranks))
        ]


def choose_rank(
    candidate_ranks: Sequence[int],
    expected_channel_gain: ArrayLike,
    power_w: ArrayLike,
    noise_psd_w_per_hz: float,
    total_bandwidth_hz: float,
    compute_latency_s: ArrayLike,
    in_out_dims: Iterable[Sequence[int]],
    latency_budget_s: float,
    bound_coeffs: RankBoundCoeffs = RankBoundCoeffs(),
    *,
    bits_per_value: int = 32,
    index_coding: IndexCoding = "mask",
    tail_energy: ArrayLike | None = None,
    rtol: float = 1e-9,
) -> RankChoice:
    r"""Offline stage of TSFA: the structural LoRA rank [kim2025soft] [R].

    Exhaustive search over the candidate grid (papers.md §2.6 stage 1) of the surrogate

    .. math::
        \mathcal B(r) = c_r\,g(r) + c_\rho\Big(1 - \frac{\bar m(r)}{r}\Big)
                      + c_T\,\frac{\mathbb E[T \mid \bar m(r)]}{\bar T},\qquad
        \bar m(r) = \max\{m \le r : \mathbb E[T \mid m] \le \bar T\}

    where :math:`g(r) = 1/r` or, when ``tail_energy`` is given, the energy
    :math:`\sum_{i>r}\sigma_i^{\star 2}` of the ideal update beyond rank :math:`r`
    (the rank term of §2.7, decreasing in :math:`r`); the second term is the sparsification
    the latency budget forces on average (flat-spectrum proxy of the SOFT error, increasing in
    :math:`r` once :math:`r > \bar m`); :math:`\mathbb E[T \mid m]` is the min-max round
    latency (:func:`min_max_latency`) of sending :math:`m` components from every device,
    averaged over the channel samples (certainty-equivalent when one gain vector is given).
    Ties go to the smaller rank. The paper's bound and its constants are unknown
    (papers.md §2.7): every coefficient is configuration.

    Parameters
    ----------
    candidate_ranks : sequence of int
        E.g. ``(2, 4, 8, 16, 32)``.
    expected_channel_gain : array_like, shape (K,) or (N, K)
        Mean power gains, or N channel samples (Monte Carlo expectation).
    power_w : float or array_like, shape (K,)
    noise_psd_w_per_hz : float
    total_bandwidth_hz : float
    compute_latency_s : float or array_like, shape (K,)
    in_out_dims : iterable of (d_in, d_out)
        Adapted matrices (payload via :func:`airtune.lora.soft_payload.soft_payload_table`).
    latency_budget_s : float
        :math:`\bar T` in s.
    bound_coeffs : RankBoundCoeffs
    bits_per_value : int, default 32
    index_coding : {"mask", "combinatorial", "none"}, default "mask"
    tail_energy : array_like, shape (R,), optional
        :math:`\sum_{i>r}\sigma_i^{\star2}` for each candidate (same order as given).
    rtol : float, default 1e-9
        Tolerance of the latency solves.

    Returns
    -------
    RankChoice
    """
    ranks = np.asarray(candidate_ranks)
    if ranks.ndim != 1 or ranks.size == 0 or np.any(ranks < 1) or np.any(ranks != np.round(ranks)):
        raise ValueError(f"candidate_ranks must be positive integers; got {candidate_ranks!r}.")
    order = np.argsort(ranks, kind="stable")
    ranks = ranks[order].astype(np.int64)
    if np.any(np.diff(ranks) == 0):
        raise ValueError(f"candidate_ranks must be distinct; got {candidate_ranks!r}.")
    g = np.atleast_2d(np.asarray(expected_channel_gain, float))  # (N, K)
    K = g.shape[1]
    if not np.all(np.isfinite(g)) or np.any(g < 0):
        raise ValueError("expected_channel_gain must be finite and non-negative, (K,) or (N, K).")
    T_bar = float(latency_budget_s)
    if not T_bar > 0:
        raise ValueError(f"latency_budget_s must be positive; got {latency_budget_s}.")
    if tail_energy is not None:
        tail = np.asarray(tail_energy, float)
        if tail.shape != ranks.shape:
            raise ValueError(f"tail_energy needs one value per candidate rank ({ranks.size}).")
        tail = tail[order]
    dims = list(in_out_dims)
    a = per_device_array(power_w, K, "power_w") * g / float(noise_psd_w_per_hz)  # (N, K)
    comp = per_device_array(compute_latency_s, K, "compute_latency_s")
    # every (rank, m) pair in one batch: payload rows (P, 1, K) against channel samples (N, K)
    tables = [soft_payload_table(int(r), dims, bits_per_value, index_coding)[1:] for r in ranks]
    rows = np.concatenate(tables).astype(float)  # (P,)
    T, _ = min_max_latency(
        np.broadcast_to(rows[:, None, None], (rows.size, g.shape[0], K)), comp, a,
        total_bandwidth_hz, rtol=rtol,
    )
    lat = T.mean(axis=1)  # (P,) expected latency of each (rank, m)
    splits = np.cumsum([t.size for t in tables])[:-1]
    full, kept, kept_lat = [], [], []
    for _r, lat_r in zip(ranks, np.split(lat, splits)):  # loop over candidate ranks, not devices
        fits = np.flatnonzero(lat_r <= T_bar)
        m_bar = int(fits[-1]) + 1 if fits.size else 0
        full.append(lat_r[-1])
        kept.append(m_bar)
        kept_lat.append(lat_r[max(m_bar, 1) - 1])
    full_a, kept_a, kept_lat_a = np.array(full), np.array(kept, np.int64), np.array(kept_lat)
    c = bound_coeffs
    rank_term = c.rank_coeff * (tail if tail_energy is not None else 1.0 / ranks)
    sp_term = c.sparsification_coeff * (1.0 - kept_a / ranks)
    lat_term = c.latency_coeff * kept_lat_a / T_bar
    bound = rank_term + sp_term + lat_term
    feasible = (full_a <= T_bar) if c.require_full_rank else (kept_a >= 1)
    if feasible.any():
        i = int(np.argmin(np.where(feasible, bound, np.inf)))
        msg = f"rank {ranks[i]} minimises the bound among {int(feasible.sum())} feasible ranks"
    else:
        i = 0
        msg = (
            f"no candidate rank meets the latency budget {T_bar:g} s on average "
            f"(one component takes {kept_lat_a[0]:.4g} s); returning the smallest"
        )
    return RankChoice(
        rank=int(ranks[i]), candidate_ranks=ranks, expected_latency_s=full_a,
        kept_components=kept_a, kept_latency_s=kept_lat_a, rank_term=rank_term,
        sparsification_term=sp_term, latency_term=lat_term, bound=bound, feasible=feasible,
        message=msg,
    )
