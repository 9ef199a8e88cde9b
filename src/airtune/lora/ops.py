r"""Pure tensor maths on LoRA factors: deltas, weighted means, FedIT and FFA-LoRA.

Every function works on *one* adapted matrix; callers loop over layers. Nothing here touches
PEFT, configuration, logging or a global RNG. Heterogeneous-rank rules (HetLoRA, FlexLoRA,
FLoRA) live in :mod:`airtune.lora.ops_hetero`; SOFT's rank importance, truncation and
orthogonality in :mod:`airtune.lora.ops_soft`, factor and weight validation in
:mod:`airtune.lora.checks` (both re-exported here).

Conventions (those of PEFT)
---------------------------
An adapted linear layer with weight ``W: (d, n)`` (``d = d_out``, ``n = d_in``) carries

* ``A: (r, n)`` -- ``lora_A.weight``; row ``i`` is :math:`a_i^\top`,
* ``B: (d, r)`` -- ``lora_B.weight``; column ``i`` is :math:`b_i`,

and its *effective* update is

.. math:: \Delta W = s\,BA = s\sum_{i=1}^{r} b_i a_i^\top,\qquad s = \alpha / r

(``s = alpha / sqrt(r)`` under rsLoRA, see :func:`lora_scale`). ``alpha`` is shared by all
devices but ranks may differ, so the scale ``s_k`` differs per device. Rules that combine
factors of *different* ranks fold ``s_k`` into ``B_k`` before combining and divide by the
receiving device's own scale when redistributing, so that the effective update is what is
preserved. Rules for a single shared rank (FedIT, FFA-LoRA) average the raw factors: the common
scale factors out of every formula.

Provenance tags ([K], [C], [R], [S]) are those of ``shared/design/papers.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor

from airtune.lora.checks import (
    Weights,
    accumulation_dtype,
    check_factor_lists,
    check_factors,
    normalize_weights,
)

__all__ = [
    "lora_scale",
    "lora_delta",
    "lora_delta_norm",
    "weighted_mean",
    "fedit_aggregate",
    "cross_covariance",
    "pad_rank",
    "truncate_rank",
    "ffa_aggregate",
    "ffa_init_A",
]


# --------------------------------------------------------------------------- basics
def lora_scale(alpha: float, rank: int, use_rslora: bool = False) -> float:
    r"""LoRA scaling factor, as PEFT computes it.

    .. math:: s = \alpha / r \quad\text{(or } \alpha/\sqrt r \text{ with rsLoRA)}

    Parameters
    ----------
    alpha : float
        ``lora_alpha``, shared by all devices.
    rank : int
        The device's rank ``r_k >= 1``.
    use_rslora : bool
        Rank-stabilised scaling (PEFT ``use_rslora``).
    """
    if rank < 1:
        raise ValueError(f"rank must be >= 1; got {rank}.")
    return alpha / math.sqrt(rank) if use_rslora else alpha / rank


def lora_delta(A: Tensor, B: Tensor, scale: float = 1.0) -> Tensor:
    r"""Effective weight update of one LoRA pair.

    .. math:: \Delta W = s\,BA

    Parameters
    ----------
    A : Tensor, shape (r, n)
    B : Tensor, shape (d, r)
    scale : float
        :math:`s = \alpha / r` (:func:`lora_scale`).

    Returns
    -------
    Tensor, shape (d, n)
    """
    check_factors(A, B)
    return scale * (B @ A)


def lora_delta_norm(A: Tensor, B: Tensor, scale: float = 1.0) -> Tensor:
    r"""Frobenius norm of the effective update without forming the ``(d, n)`` product.

    .. math:: \|sBA\|_F = |s|\,\sqrt{\langle B^\top B,\ AA^\top\rangle_F}

    Costs :math:`O(r^2(d+n))` instead of :math:`O(dnr)`.

    Parameters
    ----------
    A : Tensor, shape (r, n)
    B : Tensor, shape (d, r)
    scale : float

    Returns
    -------
    Tensor, shape ()
    """
    check_factors(A, B)
    acc = accumulation_dtype(A.dtype)
    a, b = A.to(acc), B.to(acc)
    sq = ((b.T @ b) * (a @ a.T)).sum().clamp_min(0.0)  # Gram inner product, r x r
    return abs(scale) * sq.sqrt()


def weighted_mean(tensors: Sequence[Tensor], weights: Weights) -> Tensor:
    r"""Weighted average of equally shaped tensors (FedAvg).

    .. math:: \bar X = \sum_k p_k X_k,\qquad p_k = w_k / \sum_j w_j

    Parameters
    ----------
    tensors : sequence of K Tensors, each of the same shape (...)
    weights : sequence of float or Tensor, shape (K,)
        Non-negative with a positive sum; normalised here.

    Returns
    -------
    Tensor, shape (...)
        In the dtype of the inputs (half precision is accumulated in float32).
    """
    if len(tensors) == 0:
        raise ValueError("weighted_mean needs at least one tensor.")
    shape = tensors[0].shape
    for k, t in enumerate(tensors):
        if t.shape != shape:
            raise ValueError(f"tensor {k} has shape {tuple(t.shape)}, tensor 0 {tuple(shape)}.")
    p = normalize_weights(weights, len(tensors), like=tensors[0])
    stacked = torch.stack([t.to(p.dtype) for t in tensors])  # (K, ...)
    return cast(Tensor, torch.tensordot(p, stacked, dims=1).to(tensors[0].dtype))


# --------------------------------------------------------------------------- FedIT
def fedit_aggregate(
    As: Sequence[Tensor], Bs: Sequence[Tensor], weights: Weights
) -> tuple[Tensor, Tensor]:
    r"""FedIT / vanilla FedLoRA: average each factor separately [zhang2024fedit] [K, C].

    .. math:: \bar A = \sum_k p_k A_k,\qquad \bar B = \sum_k p_k B_k

    All devices share one rank ``r`` and hence one scale ``s = alpha / r``, so the raw factors
    are averaged and the global effective update is :math:`s\bar B\bar A`. This differs from
    the ideal :math:`s\sum_k p_kB_kA_k` by ``s`` times :func:`cross_covariance`. A single
    participant gets its own factors back (its effective update is unchanged).

    Parameters
    ----------
    As : sequence of K Tensors, each (r, n)
    Bs : sequence of K Tensors, each (d, r)
    weights : sequence of float or Tensor, shape (K,)
        Data sizes :math:`D_k` (normalised here).

    Returns
    -------
    A_bar : Tensor, shape (r, n)
    B_bar : Tensor, shape (d, r)
    """
    _, ranks, _ = check_factor_lists(As, Bs)
    if len(set(ranks)) != 1:
        raise ValueError(
            f"FedIT needs one shared rank; got ranks {ranks}. Use hetlora_aggregate, "
            "flexlora_aggregate or flora_stack (airtune.lora.ops_hetero) for mixed ranks."
        )
    return weighted_mean(As, weights), weighted_mean(Bs, weights)


def cross_covariance(As: Sequence[Tensor], Bs: Sequence[Tensor], weights: Weights) -> Tensor:
    r"""Weighted cross-covariance of the client factors ("covariance effect") [kim2025soft] [R].

    .. math::
        C = \sum_k p_k (B_k-\bar B)(A_k-\bar A)
          = \sum_k p_k B_kA_k - \bar B\bar A

    (exact identity, papers.md §2.4). It is the error of separate aggregation (FedIT) and
    vanishes when either factor is common to all devices (FFA-LoRA). Computed on the raw
    factors of a shared rank; multiply by ``s = alpha / r`` for the effective-update error.

    Parameters
    ----------
    As : sequence of K Tensors, each (r, n)
    Bs : sequence of K Tensors, each (d, r)
    weights : sequence of float or Tensor, shape (K,)

    Returns
    -------
    Tensor, shape (d, n)
    """
    A_bar, B_bar = fedit_aggregate(As, Bs, weights)
    p = normalize_weights(weights, len(As), like=As[0])
    dA = torch.stack([a.to(p.dtype) for a in As]) - A_bar.to(p.dtype)  # (K, r, n)
    dB = torch.stack([b.to(p.dtype) for b in Bs]) - B_bar.to(p.dtype)  # (K, d, r)
    return torch.einsum("k,kdr,krn->dn", p, dB, dA).to(As[0].dtype)


# --------------------------------------------------------------------------- rank surgery
def pad_rank(A: Tensor, B: Tensor, r_max: int) -> tuple[Tensor, Tensor]:
    r"""Zero-pad a rank-``r`` pair to rank ``r_max`` (HetLoRA aggregation) [cho2024hetlora] [K].

    .. math:: A' = \begin{bmatrix}A\\0\end{bmatrix},\quad B' = [B\ \ 0],\quad B'A' = BA

    The scale is not touched: fold it into ``B`` first if the ranks (hence scales) differ.

    Parameters
    ----------
    A : Tensor, shape (r, n)
    B : Tensor, shape (d, r)
    r_max : int
        Target rank, ``r_max >= r``.

    Returns
    -------
    A_pad : Tensor, shape (r_max, n)
    B_pad : Tensor, shape (d, r_max)
    """
    d, r, n = check_factors(A, B)
    if r_max < r:
        raise ValueError(f"r_max={r_max} is below the rank {r} of the factors; use truncate_rank.")
    A_pad = torch.cat([A, A.new_zeros(r_max - r, n)], dim=0)
    B_pad = torch.cat([B, B.new_zeros(d, r_max - r)], dim=1)
    return A_pad, B_pad


def truncate_rank(A: Tensor, B: Tensor, r: int) -> tuple[Tensor, Tensor]:
    r"""Keep the first ``r`` rank-1 components (HetLoRA distribution) [cho2024hetlora] [K].

    .. math:: A' = A_{[:r,:]},\qquad B' = B_{[:,:r]}

    Returns copies (never views of the input). The scale is not touched.

    Parameters
    ----------
    A : Tensor, shape (R, n)
    B : Tensor, shape (d, R)
    r : int
        ``1 <= r <= R``.

    Returns
    -------
    A_r : Tensor, shape (r, n)
    B_r : Tensor, shape (d, r)
    """
    _, R, _ = check_factors(A, B)
    if not 1 <= r <= R:
        raise ValueError(f"truncation rank must be in [1, {R}]; got {r}.")
    return A[:r].clone(), B[:, :r].clone()


# --------------------------------------------------------------------------- FFA-LoRA
def ffa_aggregate(Bs: Sequence[Tensor], weights: Weights) -> Tensor:
    r"""FFA-LoRA: average only ``B``; ``A`` is frozen and shared [sun2024ffalora] [K].

    .. math:: \bar B = \sum_k p_k B_k,\qquad s\,\bar B A = \sum_k p_k\, s\,B_k A

    Exact aggregation of the effective updates (no covariance term), since ``A`` and the rank
    (hence ``s = alpha / r``) are common to all devices.

    Parameters
    ----------
    Bs : sequence of K Tensors, each (d, r)
    weights : sequence of float or Tensor, shape (K,)

    Returns
    -------
    Tensor, shape (d, r)
    """
    return weighted_mean(Bs, weights)


def ffa_init_A(
    shape: tuple[int, int],
    seed: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Deterministic shared initialisation of the frozen ``A`` of FFA-LoRA [sun2024ffalora] [K].

    Kaiming-uniform with ``a = sqrt(5)`` as PEFT initialises ``lora_A`` (fan-in ``n``):

    .. math:: A_{ij} \sim \mathcal U\!\left(-1/\sqrt n,\ 1/\sqrt n\right)

    drawn from a CPU ``torch.Generator`` seeded with ``seed``, so every device and the server
    build the same ``A`` from the same seed, independent of the global RNG and the device.
    Use one seed per adapted matrix (e.g. derived from the run seed and the layer name).

    Parameters
    ----------
    shape : (int, int)
        ``(r, n)``.
    seed : int
    dtype, device
        Of the returned tensor.

    Returns
    -------
    Tensor, shape (r, n)
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (r, n) with r, n >= 1; got {tuple(shape)}.")
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    A = torch.empty(tuple(shape), dtype=torch.float32)
    torch.nn.init.kaiming_uniform_(A, a=math.sqrt(5), generator=gen)
    return A.to(dtype=dtype, device=device)
