r"""HetLoRA [cho2024hetlora]: zero-padding aggregation, truncation and rank self-pruning.

Devices of different ranks :math:`r_k` are zero-padded to a global rank and averaged with the
norm weights of their effective updates (papers.md §4.2 [K]); each device gets back the first
:math:`r_k` components, and a tail-norm regulariser lets a device prune its own rank. Layout
and scale conventions are those of :mod:`airtune.lora.ops_hetero`, which re-exports these
names: :math:`s_k=\alpha/r_k` is folded into :math:`B_k` before combining and divided out by
the receiving device's own scale when redistributing (our convention [R]).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor

from airtune.lora.checks import (
    Weights,
    as_scales,
    check_factor_lists,
    check_factors,
    normalize_weights,
)
from airtune.lora.ops import lora_delta_norm, truncate_rank

__all__ = [
    "hetlora_weights", "hetlora_aggregate", "hetlora_distribute", "hetlora_tail_penalty",
    "hetlora_prune_rank", "HetLoRAPrune",
]


# --------------------------------------------------------------------------- HetLoRA
def hetlora_weights(As: Sequence[Tensor], Bs: Sequence[Tensor], scales: Weights) -> Tensor:
    r"""HetLoRA "sparsity" weights: norm of each effective update [cho2024hetlora] [K].

    .. math:: w_k = \frac{\|s_kB_kA_k\|_F}{\sum_j \|s_jB_jA_j\|_F}

    Norms via :func:`~airtune.lora.ops.lora_delta_norm` (no ``(d, n)`` product).

    Parameters
    ----------
    As : sequence of K Tensors, each (r_k, n)
    Bs : sequence of K Tensors, each (d, r_k)
    scales : sequence of float or Tensor, shape (K,)
        :math:`s_k = \alpha / r_k`.

    Returns
    -------
    Tensor, shape (K,)
        Sums to one. Raises ``ValueError`` when every update is zero (the rule is undefined;
        use ``weighting="data"``).
    """
    check_factor_lists(As, Bs)
    s = as_scales(scales, len(As), like=As[0])
    norms = torch.stack([lora_delta_norm(A, B, 1.0).to(s.dtype) for A, B in zip(As, Bs)]) * s
    if not float(norms.sum()) > 0.0:
        raise ValueError(
            "HetLoRA norm weights are undefined: every device's update s_k B_k A_k is zero. "
            "Use weighting='data' for this round."
        )
    return norms / norms.sum()


def hetlora_aggregate(
    As: Sequence[Tensor],
    Bs: Sequence[Tensor],
    ranks: Sequence[int],
    scales: Weights,
    r_max: int | None = None,
    weighting: str = "norm",
    data_weights: Weights | None = None,
) -> tuple[Tensor, Tensor]:
    r"""HetLoRA zero-padding aggregation of heterogeneous ranks [cho2024hetlora] [K; scale R].

    .. math::
        \bar A = \sum_k w_k\,\mathrm{pad}(A_k),\qquad
        \bar B = \sum_k w_k\,\mathrm{pad}(s_kB_k)

    with ``pad`` to rank ``r_max`` by zero rows of ``A`` / zero columns of ``B`` and
    :math:`w_k` either the norm weights of :func:`hetlora_weights` (the paper's rule) or the
    normalised data sizes (as several reproductions do). The scale :math:`s_k=\alpha/r_k` is
    folded into ``B`` before averaging, so the global pair carries scale 1: the global
    effective update is :math:`\bar B\bar A` (no further scaling). Get a device's factors
    with :func:`hetlora_distribute`, which divides by that device's own scale. Like FedIT, the
    product of averages is not the average of products (covariance effect).

    Parameters
    ----------
    As : sequence of K Tensors, each (r_k, n)
    Bs : sequence of K Tensors, each (d, r_k)
    ranks : sequence of K int
        :math:`r_k`; must match the factor shapes.
    scales : sequence of float or Tensor, shape (K,)
        :math:`s_k = \alpha / r_k`.
    r_max : int, optional
        Global rank (default: ``max(ranks)``); ``r_max >= max(ranks)``.
    weighting : {"norm", "data"}
    data_weights : sequence of float or Tensor, shape (K,), optional
        Data sizes; required for ``weighting="data"``.

    Returns
    -------
    A_glob : Tensor, shape (r_max, n)
    B_glob : Tensor, shape (d, r_max)
        Scale folded in.
    """
    d, shape_ranks, n = check_factor_lists(As, Bs)
    if list(ranks) != shape_ranks:
        raise ValueError(f"ranks {list(ranks)} do not match the factor shapes {shape_ranks}.")
    r_max = max(shape_ranks) if r_max is None else int(r_max)
    if r_max < max(shape_ranks):
        raise ValueError(f"r_max={r_max} is below the largest device rank {max(shape_ranks)}.")
    K = len(As)
    if weighting == "norm":
        w = hetlora_weights(As, Bs, scales)
    elif weighting == "data":
        if data_weights is None:
            raise ValueError("weighting='data' needs data_weights (the devices' data sizes).")
        w = normalize_weights(data_weights, K, like=As[0])
    else:
        raise ValueError(f"weighting must be 'norm' or 'data'; got {weighting!r}.")
    s = as_scales(scales, K, like=As[0])
    acc = w.dtype
    A_pad = torch.zeros(K, r_max, n, dtype=acc, device=As[0].device)  # (K, r_max, n)
    B_pad = torch.zeros(K, d, r_max, dtype=acc, device=As[0].device)  # (K, d, r_max)
    for k, (A, B) in enumerate(zip(As, Bs)):
        r = A.shape[0]
        A_pad[k, :r] = A.to(acc)
        B_pad[k, :, :r] = B.to(acc) * s[k]
    A_glob = torch.tensordot(w, A_pad, dims=1).to(As[0].dtype)
    B_glob = torch.tensordot(w, B_pad, dims=1).to(Bs[0].dtype)
    return A_glob, B_glob


def hetlora_distribute(
    A_glob: Tensor, B_glob: Tensor, r_k: int, scale: float = 1.0
) -> tuple[Tensor, Tensor]:
    r"""HetLoRA distribution by truncation [cho2024hetlora] [K; scale R].

    .. math:: A_k = \bar A_{[:r_k,:]},\qquad B_k = \bar B_{[:,:r_k]} / s_k

    ``B_glob`` carries scale 1 (:func:`hetlora_aggregate`); dividing by the device's own
    :math:`s_k=\alpha/r_k` makes :math:`s_kB_kA_k` equal the first ``r_k`` components of the
    global update. Copies, not views.

    Parameters
    ----------
    A_glob : Tensor, shape (r_max, n)
    B_glob : Tensor, shape (d, r_max)
    r_k : int
        ``1 <= r_k <= r_max``.
    scale : float
        Receiving device's :math:`s_k` (1 keeps the folded, scale-1 form).

    Returns
    -------
    A_k : Tensor, shape (r_k, n)
    B_k : Tensor, shape (d, r_k)
    """
    if not scale > 0:
        raise ValueError(f"scale must be positive; got {scale}.")
    A_k, B_k = truncate_rank(A_glob, B_glob, r_k)
    return A_k, B_k / scale


def _tail_start(r: int, gamma: float) -> int:
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must be in [0, 1); got {gamma}.")
    return int(math.floor(gamma * r))


def hetlora_tail_penalty(A: Tensor, B: Tensor, gamma: float) -> Tensor:
    r"""HetLoRA rank self-pruning regulariser (differentiable) [cho2024hetlora] [K].

    .. math:: \mathcal R = \|B_{[:,\lfloor\gamma r\rfloor:r]}\|_F\,
              \|A_{[\lfloor\gamma r\rfloor:r,:]}\|_F

    Add :math:`\lambda\mathcal R` to the local loss. Raw factors (the scale is a constant
    factor that :math:`\lambda` absorbs). The gradient is finite at ``B = 0`` (LoRA's init).

    Parameters
    ----------
    A : Tensor, shape (r, n)
    B : Tensor, shape (d, r)
    gamma : float
        Kept fraction, ``0 <= gamma < 1``.

    Returns
    -------
    Tensor, shape ()
    """
    _, r, _ = check_factors(A, B)
    t = _tail_start(r, gamma)
    return cast(Tensor, torch.linalg.vector_norm(B[:, t:]) * torch.linalg.vector_norm(A[t:]))


@dataclass(frozen=True)
class HetLoRAPrune:
    r"""Outcome of :func:`hetlora_prune_rank`.

    Attributes
    ----------
    A : Tensor, shape (rank, n)
    B : Tensor, shape (d, rank)
    rank : int
        New rank (``r_k`` when not pruned).
    pruned : bool
    tail_norm : float
        :math:`\|B_{\rm tail}\|_F\|A_{\rm tail}\|_F` of this round at rank ``r_k``.
    next_reference : float or None
        What to pass as ``prev_tail_norm`` next round: ``tail_norm``, or None after a prune
        (the tail has moved, so the comparison restarts).
    """

    A: Tensor
    B: Tensor
    rank: int
    pruned: bool
    tail_norm: float
    next_reference: float | None


def hetlora_prune_rank(
    A: Tensor,
    B: Tensor,
    r_k: int,
    gamma: float,
    prev_tail_norm: float | None,
    min_rank: int = 1,
    rel_tol: float = 0.0,
) -> HetLoRAPrune:
    r"""HetLoRA local rank self-pruning [cho2024hetlora] [K rule; R trigger].

    .. math::
        \tau_t = \|B_{[:,\lfloor\gamma r_k\rfloor:r_k]}\|_F\,
                  \|A_{[\lfloor\gamma r_k\rfloor:r_k,:]}\|_F,\qquad
        r_k \leftarrow \max(\lfloor\gamma r_k\rfloor,\ r_{\min})
        \ \text{ if } \tau_t < (1-\epsilon)\,\tau_{t-1}

    The trigger ("the tail norm decreased relative to the previous round") is our reading of
    the HetLoRA paper [R]; no prune happens without a previous value. Only the first ``r_k``
    components of the factors are active (extra ones, e.g. zero padding, are dropped).

    The returned factors are truncated only, as the paper states the rule on unscaled
    :math:`B_kA_k`. Under the scale :math:`\alpha/r` a pruned pair used at its new rank's scale
    :math:`\alpha/r'` has its kept components multiplied by :math:`r/r'`; to preserve them,
    truncate ``B`` with the old scale folded in and divide by the new one
    (:func:`hetlora_distribute`, as ``strategies/hetlora.py`` does).

    Parameters
    ----------
    A : Tensor, shape (R, n)
    B : Tensor, shape (d, R)
        ``R >= r_k``.
    r_k : int
        Current rank.
    gamma : float
        ``0 <= gamma < 1``.
    prev_tail_norm : float or None
        :math:`\tau_{t-1}` (``next_reference`` of the previous call), None in the first round.
    min_rank : int
        Lower bound on the pruned rank (>= 1).
    rel_tol : float
        :math:`\epsilon \ge 0`, relative decrease required to prune.

    Returns
    -------
    HetLoRAPrune
    """
    _, R, _ = check_factors(A, B)
    if not 1 <= min_rank <= r_k <= R:
        raise ValueError(f"need 1 <= min_rank ({min_rank}) <= r_k ({r_k}) <= factor rank ({R}).")
    t = _tail_start(r_k, gamma)
    with torch.no_grad():
        tail = float(torch.linalg.vector_norm(B[:, t:r_k]) * torch.linalg.vector_norm(A[t:r_k]))
    new_rank = max(t, min_rank)
    decreased = prev_tail_norm is not None and tail < (1.0 - rel_tol) * prev_tail_norm
    pruned = bool(decreased and new_rank < r_k)
    rank = new_rank if pruned else r_k
    A_out, B_out = truncate_rank(A, B, rank)
    return HetLoRAPrune(A_out, B_out, rank, pruned, tail, None if pruned else tail)
