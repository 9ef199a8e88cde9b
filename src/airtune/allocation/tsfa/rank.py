r"""TSFA stage 1, offline: choose the structural LoRA rank [kim2025soft] (papers.md §2.6-2.7, [R]).

The criterion is the convergence bound's two rank-dependent terms (papers.md §2.7) in one unit,
the energy of the ideal update :math:`\Delta W^\star` of an adapted matrix, with the
sparsification the online stage would choose (our reconstruction; the paper's bound and its
constants are not available):

.. math::
    \mathcal B(r) = \underbrace{\sum_{i>r}\sigma_i^{\star2}}_{\text{(i) structural rank}}
      + \underbrace{\mathbb E_h\Big[\sum_{i\le r}\sigma_i^{\star2}\big(1 - P_i(r,h)\big)^2\Big]}
        _{\text{(ii) sparsification error}},\qquad
      P_i = \sum_{k:\ m_k(r,h)\ge i} p_k,\qquad \sum_i\sigma_i^{\star2} = 1

* (i) is the energy a rank-:math:`r` adapter cannot represent; (ii) is the sparsification
  error of the *aggregate*, :math:`\|\sum_k p_k e_k\|^2` with :math:`e_k` device :math:`k`'s
  dropped components, under ``keep_global`` aggregation: offline every device has the same
  expected spectrum, so the components a device drops are the same ones on every device and
  their errors add coherently (component :math:`i` reaches the server with weight
  :math:`P_i`). A component nobody sends costs as much as one beyond the rank, so a larger
  rank helps only as far as the devices with good channels use it. Both terms are the same
  energy of the ideal update (no free weights). Our choice: the online stage's
  :math:`\sum_k p_k^2\varepsilon_k` (independent errors) would make components that nobody
  sends nearly free (a :math:`p_k^2` discount), and stage 1 would then always pick the
  largest candidate. The covariance term (iii) depends on client drift, which the offline
  stage cannot predict, and is left out.
* :math:`m_k(r, h)` is what stage 2 does at the budget: for each Monte-Carlo channel sample
  :math:`h`, the kept components when every device must finish by :math:`\bar T` (the
  greedy of :func:`~airtune.allocation.tsfa.deadline.greedy_levels` on
  :math:`p_k^2\varepsilon(m)`; at least one component each).
* What a larger rank costs: nothing in (i); in (ii), devices whose channel cannot carry more
  components drop them, while devices with good channels use them; the downlink of the rank-r
  global factors and the index bits shrink every device's slack. So the bound trades the
  rank term against channel diversity and the downlink, instead of picking "the largest rank
  whose full upload fits" (paper-checks.md Paper 2 item 2).
* :math:`\sigma_i^{\star2}` (our choice): a power law :math:`\propto i^{-\gamma}` over
  :math:`i = 1..D` (``spectrum_decay`` :math:`\gamma`, :math:`D` = the smallest side of the
  adapted matrices), or a measured spectrum (``ideal_spectrum``).

The per-round online stage is in :mod:`airtune.allocation.tsfa.solver`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from airtune.allocation.tsfa.deadline import greedy_levels, min_max_latency
from airtune.allocation.tsfa.solver import per_device_array
from airtune.lora.soft_payload import IndexCoding, soft_payload_table

__all__ = ["RankChoice", "choose_rank", "kept_at_budget", "power_law_spectrum", "stage1_bound"]


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
    kept_components : numpy.ndarray
        :math:`\mathbb E[\frac1n\sum_k m_k(r, h)]`: mean kept components at the budget.
    kept_latency_s : numpy.ndarray
        :math:`\mathbb E[T \mid m = 1]`: round latency of the sparsest upload.
    rank_term, sparsification_term, bound : numpy.ndarray
        Terms (i), (ii) of the criterion and their sum.
    feasible : numpy.ndarray of bool
        :math:`\mathbb E[T \mid m = 1] \le \bar T` (one component each fits on average).
    message : str
    """

    rank: int
    candidate_ranks: np.ndarray
    expected_latency_s: np.ndarray
    kept_components: np.ndarray
    kept_latency_s: np.ndarray
    rank_term: np.ndarray
    sparsification_term: np.ndarray
    bound: np.ndarray
    feasible: np.ndarray
    message: str

    @property
    def any_feasible(self) -> bool:
        """Whether some candidate meets the latency budget."""
        return bool(self.feasible.any())

    def table(self) -> list[dict[str, float | int | bool]]:
        """One row per candidate rank (for logs and reports)."""
        cols = ("candidate_ranks", "expected_latency_s", "kept_components", "kept_latency_s",
                "rank_term", "sparsification_term", "bound", "feasible")
        return [{c: getattr(self, c)[i].item() for c in cols} for i in range(len(self.candidate_ranks))]


def power_law_spectrum(size: int, decay: float) -> np.ndarray:
    r""":math:`\sigma_i^{\star2} = i^{-\gamma} / \sum_{j\le D} j^{-\gamma}`, :math:`i = 1..D` (sums to 1)."""
    if size < 1 or not np.isfinite(decay) or decay < 0:
        raise ValueError(f"need size >= 1 and a finite decay >= 0; got {size}, {decay}.")
    s = np.arange(1, size + 1, dtype=float) ** -float(decay)
    return np.asarray(s / s.sum(), float)


def stage1_bound(spectrum: ArrayLike, rank: int, kept: ArrayLike, weights: ArrayLike) -> tuple[float, float]:
    r"""Terms (i) and (ii) of :math:`\mathcal B(r)` for one or more channel samples.

    .. math::
        \text{(i)} = \sum_{i>r}\sigma_i^2,\qquad
        \text{(ii)} = \operatorname{mean}_h \sum_{i\le r}\sigma_i^2\Big(1 - \sum_{k: m_{h,k}\ge i} p_{h,k}\Big)^2

    Parameters
    ----------
    spectrum : array_like, shape (D,)
        :math:`\sigma_i^{\star2}`, descending, normally summing to 1 (``D < r`` is zero-padded).
    rank : int
    kept : array_like of int, shape (N, n)
        :math:`m_{h,k} \in [1, r]` per sample and scheduled device.
    weights : array_like, shape (N, n)
        :math:`p_{h,k}`, each row summing to 1.
    """
    sig = np.asarray(spectrum, float)
    r = int(rank)
    pad = np.concatenate([sig, np.zeros(max(0, r - sig.size))])
    tail = np.concatenate([np.cumsum(pad[::-1])[::-1], [0.0]])  # tail[m] = sum_{i>m} sigma_i^2
    m = np.atleast_2d(np.asarray(kept, np.int64))
    p = np.atleast_2d(np.asarray(weights, float))
    reach = (p[:, :, None] * (m[:, :, None] >= np.arange(1, r + 1))).sum(1)  # (N, r): P_i
    return float(tail[r]), float(np.mean(((1.0 - reach) ** 2 * pad[:r]).sum(-1)))


def kept_at_budget(payload_bits: np.ndarray, tail: np.ndarray, weights: np.ndarray, fixed_latency_s: np.ndarray,
                   snr_hz: np.ndarray, total_bandwidth_hz: float, budget_s: float) -> np.ndarray:
    r"""Kept components (N, n) when every device must finish by :math:`\bar T`, per channel sample:
    the online stage's greedy (:func:`~airtune.allocation.tsfa.deadline.greedy_levels`) on
    :math:`p_k^2\,\mathrm{tail}(m)`; ``payload_bits`` (r,) for m = 1..r, ``tail`` (r,),
    ``weights``/``snr_hz`` (N, n); 1 everywhere when one component each does not fit."""
    N, n = snr_hz.shape
    r = payload_bits.shape[0]
    kept = np.empty((N, n), np.int64)
    for h in range(N):
        w_err = weights[h, :, None] ** 2 * tail[None, :]
        kept[h] = greedy_levels(np.array([budget_s]), np.broadcast_to(payload_bits, (n, r)), w_err,
                                fixed_latency_s, snr_hz[h], total_bandwidth_hz)[0] + 1
    return kept


def choose_rank(
    candidate_ranks: Sequence[int],
    channel_gain: ArrayLike,
    power_w: ArrayLike,
    noise_psd_w_per_hz: float,
    total_bandwidth_hz: float,
    fixed_latency_s: ArrayLike,
    in_out_dims: Iterable[Sequence[int]],
    latency_budget_s: float,
    *,
    weights: ArrayLike | None = None,
    spectrum_decay: float = 1.0,
    ideal_spectrum: ArrayLike | None = None,
    head_bits: float = 0.0,
    bits_per_value: int = 32,
    index_coding: IndexCoding = "mask",
    rtol: float = 1e-9,
) -> RankChoice:
    r"""Offline stage of TSFA: the structural LoRA rank minimising :math:`\mathcal B(r)` [R].

    Exhaustive search over the candidate grid (papers.md §2.6 stage 1), criterion in the module
    docstring; ties go to the smaller rank; a candidate is feasible when one component per
    device fits :math:`\bar T` on average.

    Parameters
    ----------
    candidate_ranks : sequence of int
        E.g. ``(2, 4, 8, 16, 32)``.
    channel_gain : array_like, shape (N, n) or (n,)
        Power gains of the ``n`` scheduled devices in ``N`` channel samples.
    power_w : float or array_like, shape (n,)
    noise_psd_w_per_hz : float
    total_bandwidth_hz : float
    fixed_latency_s : float or array_like, shape (n,) or (R, n)
        Compute + downlink latency :math:`\tau_k` per device, or per candidate rank (in the order
        given; the downlink of the rank-r global factors grows with r).
    in_out_dims : iterable of (d_in, d_out)
        Adapted matrices (payload via :func:`airtune.lora.soft_payload.soft_payload_table`).
    latency_budget_s : float
        :math:`\bar T` in s.
    weights : array_like, shape (N, n) or (n,), optional
        Aggregation weights :math:`p_k` of the scheduled devices (rows normalised; default equal).
    spectrum_decay : float, default 1.0
        :math:`\gamma` of the power-law ideal spectrum (our choice, see the module docstring).
    ideal_spectrum : array_like, shape (D,), optional
        A measured :math:`\sigma_i^{\star2}` (normalised here) instead of the power law.
    head_bits : float, default 0
        Bits of the dense head added to every upload.
    bits_per_value : int, default 32
    index_coding : {"mask", "combinatorial", "none"}, default "mask"
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
    g = np.atleast_2d(np.asarray(channel_gain, float))  # (N, n)
    N, n = g.shape
    if not np.all(np.isfinite(g)) or np.any(g < 0):
        raise ValueError("channel_gain must be finite and non-negative, (n,) or (N, n).")
    T_bar = float(latency_budget_s)
    if not T_bar > 0:
        raise ValueError(f"latency_budget_s must be positive; got {latency_budget_s}.")
    fixed = np.asarray(fixed_latency_s, float)
    if fixed.ndim > 2 or (fixed.ndim == 2 and fixed.shape != (ranks.size, n)) or (fixed.ndim == 1 and fixed.size not in (1, n)):
        raise ValueError(f"fixed_latency_s must have shape ({n},) or ({ranks.size}, {n}); got {fixed.shape}.")
    fixed = fixed[order] if fixed.ndim == 2 else np.broadcast_to(fixed, (ranks.size, n)).copy()
    if not np.all(np.isfinite(fixed)) or np.any(fixed < 0):
        raise ValueError(f"fixed_latency_s must be finite, >= 0, shape ({n},) or ({ranks.size}, {n}).")
    p = np.broadcast_to(np.ones(n) if weights is None else np.asarray(weights, float), (N, n))
    if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p.sum(-1) <= 0):
        raise ValueError("weights must be finite, non-negative, with a positive sum per sample.")
    p = p / p.sum(-1, keepdims=True)
    dims = list(in_out_dims)
    if ideal_spectrum is None:
        sig = power_law_spectrum(int(min(min(d) for d in dims)), spectrum_decay)
    else:
        sig = np.asarray(ideal_spectrum, float)
        if sig.ndim != 1 or sig.size == 0 or np.any(sig < 0) or not sig.sum() > 0:
            raise ValueError("ideal_spectrum must be a non-empty (D,) array of energies >= 0 with a positive sum.")
        sig = np.sort(sig)[::-1] / sig.sum()
    a = per_device_array(power_w, n, "power_w") * g / float(noise_psd_w_per_hz)  # (N, n)
    B = float(total_bandwidth_hz)
    full, one, kept_mean, rank_t, sp_t = [], [], [], [], []
    for j, r in enumerate(ranks):
        S = soft_payload_table(int(r), dims, bits_per_value, index_coding)[1:].astype(float) + float(head_bits)
        ends, _ = min_max_latency(np.broadcast_to(S[[0, -1]][:, None, None], (2, N, n)), fixed[j], a, B, rtol=rtol)
        one.append(float(ends[0].mean()))
        full.append(float(ends[1].mean()))
        pad = np.concatenate([sig, np.zeros(max(0, int(r) - sig.size))])
        tail = np.cumsum(pad[::-1])[::-1][1: int(r) + 1]  # tail[m - 1] = sum_{i>m} sigma_i^2, m = 1..r
        kept = kept_at_budget(S, tail, p, fixed[j], a, B, T_bar)
        ti, tii = stage1_bound(sig, int(r), kept, p)
        rank_t.append(ti)
        sp_t.append(tii)
        kept_mean.append(float(kept.mean()))
    rank_term, sp_term = np.array(rank_t), np.array(sp_t)
    bound = rank_term + sp_term
    feasible = np.array(one) <= T_bar
    if feasible.any():
        i = int(np.argmin(np.where(feasible, bound, np.inf)))
        msg = f"rank {ranks[i]} minimises the bound among {int(feasible.sum())} feasible ranks"
    else:
        i = 0
        msg = (f"no candidate rank meets the latency budget {T_bar:g} s on average "
               f"(one component takes {one[0]:.4g} s); returning the smallest")
    return RankChoice(
        rank=int(ranks[i]), candidate_ranks=ranks, expected_latency_s=np.array(full),
        kept_components=np.array(kept_mean), kept_latency_s=np.array(one), rank_term=rank_term,
        sparsification_term=sp_term, bound=bound, feasible=feasible, message=msg,
    )
