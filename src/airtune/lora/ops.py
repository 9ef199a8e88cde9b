r"""Pure tensor maths on LoRA factors: deltas, weighted means, FedIT, FFA-LoRA and SOFT.

Every function works on *one* adapted matrix; callers loop over layers. Nothing here touches
PEFT, configuration, logging or a global RNG. Heterogeneous-rank rules (HetLoRA, FlexLoRA,
FLoRA) live in :mod:`airtune.lora.ops_hetero`.

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

import torch
from torch import Tensor

__all__ = [
    "lora_scale",
    "lora_delta",
    "lora_delta_norm",
    "normalize_weights",
    "weighted_mean",
    "fedit_aggregate",
    "cross_covariance",
    "pad_rank",
    "truncate_rank",
    "ffa_aggregate",
    "ffa_init_A",
    "rank_importance",
    "top_m_components",
    "truncation_error_from_scores",
    "truncation_error_curve",
    "orthogonality_error",
    "orthogonality_penalty",
]

Weights = Sequence[float] | Tensor


# --------------------------------------------------------------------------- validation helpers
def check_factors(A: Tensor, B: Tensor, name: str = "") -> tuple[int, int, int]:
    """Check that ``A: (r, n)`` and ``B: (d, r)`` form a LoRA pair; return ``(d, r, n)``."""
    if A.ndim != 2 or B.ndim != 2:
        raise ValueError(
            f"LoRA factors{name} must be 2-D (A: (r, n), B: (d, r)); got A{tuple(A.shape)}, "
            f"B{tuple(B.shape)}. Pass one adapted matrix at a time."
        )
    r, n = A.shape
    d, r_b = B.shape
    if r != r_b:
        raise ValueError(
            f"rank mismatch{name}: A{tuple(A.shape)} has {r} rows but B{tuple(B.shape)} has "
            f"{r_b} columns; the PEFT layout is A: (r, d_in), B: (d_out, r)."
        )
    return d, r, n


def check_factor_lists(As: Sequence[Tensor], Bs: Sequence[Tensor]) -> tuple[int, list[int], int]:
    """Check ``K >= 1`` LoRA pairs of one adapted matrix; return ``(d, ranks, n)``."""
    if len(As) == 0 or len(As) != len(Bs):
        raise ValueError(
            f"need as many A factors as B factors (at least one); got {len(As)} and {len(Bs)}."
        )
    dims = [check_factors(A, B, name=f" of device {k}") for k, (A, B) in enumerate(zip(As, Bs))]
    d0, _, n0 = dims[0]
    for k, (d, _, n) in enumerate(dims):
        if (d, n) != (d0, n0):
            raise ValueError(
                f"device {k} adapts a ({d}, {n}) matrix but device 0 a ({d0}, {n0}) one; "
                "aggregate one adapted matrix (one layer) at a time."
            )
    return d0, [r for _, r, _ in dims], n0


def normalize_weights(weights: Weights, num: int, like: Tensor | None = None) -> Tensor:
    r"""Validate aggregation weights and normalise them to sum to one.

    Parameters
    ----------
    weights : sequence of float or Tensor, shape (K,)
        Non-negative, finite, with a positive sum (e.g. local data sizes :math:`D_k`).
    num : int
        Expected number of devices ``K``.
    like : Tensor, optional
        The result takes its device and (at least float32) floating dtype.

    Returns
    -------
    Tensor, shape (K,)
        :math:`p_k = w_k / \sum_j w_j`.
    """
    w = torch.as_tensor(weights, dtype=torch.float64).detach().cpu()
    if w.ndim != 1 or w.numel() != num:
        raise ValueError(f"weights must have shape ({num},), one per device; got {tuple(w.shape)}.")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError(f"weights must be finite and non-negative; got {w.tolist()}.")
    total = float(w.sum())
    if total <= 0.0:
        raise ValueError(f"weights must have a positive sum; got {w.tolist()}.")
    p = w / total
    if like is not None:
        p = p.to(device=like.device, dtype=_acc_dtype(like.dtype))
    return p


def _as_scales(scales: Weights, num: int, like: Tensor) -> Tensor:
    s = torch.as_tensor(scales, dtype=torch.float64).detach().cpu()
    if s.ndim == 0:
        s = s.expand(num)
    if s.ndim != 1 or s.numel() != num:
        raise ValueError(f"scales must have shape ({num},), one per device; got {tuple(s.shape)}.")
    if not bool(torch.isfinite(s).all()) or bool((s <= 0).any()):
        raise ValueError(f"LoRA scales alpha/r_k must be finite and positive; got {s.tolist()}.")
    return s.to(device=like.device, dtype=_acc_dtype(like.dtype))


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulate half-precision inputs in float32; keep float32/float64 as they are."""
    return torch.promote_types(dtype, torch.float32)


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
    acc = _acc_dtype(A.dtype)
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
    return torch.tensordot(p, stacked, dims=1).to(tensors[0].dtype)


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


# --------------------------------------------------------------------------- SOFT
def rank_importance(A: Tensor, B: Tensor) -> Tensor:
    r"""Per-rank importance of SOFT: norm of each rank-1 component [kim2025soft] [S idea, R form].

    .. math:: s_i = \|b_i\|_2\,\|a_i\|_2 = \|b_i a_i^\top\|_F,\qquad i = 1..r

    :math:`O(r(d+n))`: no product ``BA``, no SVD. When the rows of ``A`` are orthonormal and
    the columns of ``B`` mutually orthogonal, the :math:`s_i` are the singular values of
    ``BA``. Computed on raw factors: the scale ``s = alpha / r`` multiplies all scores
    equally, so the ranking is unchanged and the singular values of the effective update are
    ``scale * s_i``.

    Parameters
    ----------
    A : Tensor, shape (r, n)
    B : Tensor, shape (d, r)

    Returns
    -------
    Tensor, shape (r,)
    """
    check_factors(A, B)
    return torch.linalg.vector_norm(B, dim=0) * torch.linalg.vector_norm(A, dim=1)


def top_m_components(A: Tensor, B: Tensor, m: int) -> tuple[Tensor, Tensor, Tensor]:
    r"""Keep the ``m`` most important rank-1 components (SOFT sparsification) [kim2025soft] [R].

    .. math::
        \mathcal M = \operatorname{top-}m\{s_i\},\qquad
        B_mA_m = \sum_{i\in\mathcal M} b_i a_i^\top

    With near-orthogonal factors this is the Eckart--Young rank-``m`` truncation. Ties break
    towards the lower index. The kept components stay in their original order.

    Parameters
    ----------
    A : Tensor, shape (r, n)
    B : Tensor, shape (d, r)
    m : int
        ``0 <= m <= r``.

    Returns
    -------
    A_m : Tensor, shape (m, n)
        Rows ``idx`` of ``A``.
    B_m : Tensor, shape (d, m)
        Columns ``idx`` of ``B``.
    idx : Tensor of int64, shape (m,)
        Kept rank indices, ascending.
    """
    _, r, _ = check_factors(A, B)
    if not 0 <= m <= r:
        raise ValueError(f"m must be in [0, {r}]; got {m}.")
    scores = rank_importance(A, B)
    order = torch.argsort(scores, descending=True, stable=True)
    idx = torch.sort(order[:m]).values
    return A[idx], B[:, idx], idx


def truncation_error_from_scores(scores: Tensor, idx: Tensor) -> Tensor:
    r"""Energy dropped by keeping only components ``idx`` [kim2025soft] [R].

    .. math:: \varepsilon = \sum_{i\notin\mathcal M} s_i^2

    Equals :math:`\|BA - B_mA_m\|_F^2` exactly when the factors are orthogonal (as in
    :func:`rank_importance`); multiply by ``scale**2`` for the effective update.

    Parameters
    ----------
    scores : Tensor, shape (r,)
        From :func:`rank_importance`.
    idx : Tensor of int64, shape (m,)
        Kept indices (distinct).

    Returns
    -------
    Tensor, shape ()
    """
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D (r,); got shape {tuple(scores.shape)}.")
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep[idx.to(torch.long)] = True
    return (scores[~keep] ** 2).sum()


def truncation_error_curve(scores: Tensor) -> Tensor:
    r"""SOFT truncation error for every number of kept components ``m = 0..r`` [kim2025soft] [R].

    .. math:: \varepsilon(m) = \sum_{j>m} s_{(j)}^2,\qquad s_{(1)}\ge s_{(2)}\ge\dots

    The error table the online stage of TSFA searches over (papers.md §2.6).

    Parameters
    ----------
    scores : Tensor, shape (r,)

    Returns
    -------
    Tensor, shape (r + 1,)
        Entry ``m`` is the error of keeping the top ``m``; ``eps[r] == 0``.
    """
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D (r,); got shape {tuple(scores.shape)}.")
    sq = torch.sort(scores, descending=True).values ** 2
    tail = torch.flip(torch.cumsum(torch.flip(sq, [0]), 0), [0])  # tail[m] = sum_{j>=m} sq[j]
    return torch.cat([tail, sq.new_zeros(1)])


def orthogonality_error(A: Tensor, B: Tensor) -> tuple[Tensor, Tensor]:
    r"""Distances of the factors from SOFT's orthogonal structure [kim2025soft] [R].

    .. math::
        e_A = \|AA^\top - I_r\|_F,\qquad
        e_B = \|B^\top B - \operatorname{diag}(B^\top B)\|_F

    ``A`` should have orthonormal rows, ``B`` mutually orthogonal columns (of any norm, since
    ``B`` starts at zero).

    Parameters
    ----------
    A : Tensor, shape (r, n)
    B : Tensor, shape (d, r)

    Returns
    -------
    e_A : Tensor, shape ()
    e_B : Tensor, shape ()
    """
    sq_a, sq_b = _orthogonality_sq(A, B)
    return sq_a.sqrt(), sq_b.sqrt()


def orthogonality_penalty(A: Tensor, B: Tensor) -> Tensor:
    r"""SOFT orthogonality regulariser, differentiable [kim2025soft] [R].

    .. math::
        \mathcal R = \|AA^\top - I_r\|_F^2
                    + \|B^\top B - \operatorname{diag}(B^\top B)\|_F^2

    Add :math:`\lambda_{\rm orth}\mathcal R` to the local loss (papers.md §2.5).

    Parameters
    ----------
    A : Tensor, shape (r, n)
    B : Tensor, shape (d, r)

    Returns
    -------
    Tensor, shape ()
    """
    sq_a, sq_b = _orthogonality_sq(A, B)
    return sq_a + sq_b


def _orthogonality_sq(A: Tensor, B: Tensor) -> tuple[Tensor, Tensor]:
    _, r, _ = check_factors(A, B)
    eye = torch.eye(r, dtype=A.dtype, device=A.device)
    gram_a = A @ A.T - eye  # (r, r)
    gram_b = B.T @ B  # (r, r)
    off_b = gram_b - torch.diag_embed(torch.diagonal(gram_b))
    return (gram_a**2).sum(), (off_b**2).sum()
