r"""Sparsified LoRA uploads: SOFT's rank masks, the naive and SVD baselines, partial aggregation.

Pure tensor maths for papers.md §2.5 (SOFT [kim2025soft]) and the baselines of §2.8; the
strategies in ``strategies/soft.py`` and ``strategies/sparse_baselines.py`` only call these.
Every formula here is [R] our reconstruction (the paper's own equations are not available).

* Partial-rank aggregation (§2.5 step 4): each device sends a subset of the rank components of
  its factors; component :math:`i` of the global factor is aggregated from the devices that sent
  it. Two rules: ``keep_global`` (default; a component a device did not send counts as the
  round-start global value, i.e. a zero update) and ``renormalise`` (average over the senders
  only, weights renormalised; the global value when nobody sent it).
* Error feedback (§2.5 step 3, optional): the unsent part of a device's (corrected) update is kept
  as a residual and added to its next update.
* Naive baseline: element-wise top-k magnitude sparsification of :math:`A` and :math:`B`
  separately, with index bits.
* Oracle baseline: rank-:math:`m` truncated SVD of the product :math:`BA`.
* Closed-form gradient of the SOFT orthogonality regulariser, and the exact singular values of
  :math:`BA` from QR of the factors (:math:`O(r^2(d+n))`), for diagnostics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from airtune.lora.checks import check_factors, normalize_weights
from airtune.lora.ops_soft import rank_importance

__all__ = [
    "AggregationRule",
    "masked_aggregate",
    "partial_rank_aggregate",
    "rank_mask",
    "soft_select",
    "split_residual",
    "topk_mask",
    "kept_elements",
    "topk_index_bits",
    "topk_payload_bits",
    "svd_truncate",
    "singular_values_from_factors",
    "orthogonality_penalty_grad",
]

AggregationRule = Literal["keep_global", "renormalise"]
TopkIndexCoding = Literal["position", "mask", "min"]


# --------------------------------------------------------------------------- aggregation
def masked_aggregate(
    global_t: Tensor, locals_: Sequence[Tensor], masks: Sequence[Tensor], weights: Sequence[float] | Tensor,
    rule: AggregationRule = "keep_global",
) -> Tensor:
    r"""Aggregate tensors of which each device sent only the entries in its mask [R].

    .. math::
        \texttt{keep\_global}:\quad x = g + \sum_k p_k\, m_k \odot (x_k - g),\qquad
        \texttt{renormalise}:\quad x = \begin{cases}
            \dfrac{\sum_k p_k m_k \odot x_k}{\sum_k p_k m_k} & \sum_k p_k m_k > 0\\
            g & \text{otherwise}\end{cases}

    with :math:`p_k` the normalised weights. With every mask full both rules are FedAvg.

    Parameters
    ----------
    global_t : Tensor, any shape
        Round-start global value :math:`g`.
    locals_ : sequence of K Tensors, shape of ``global_t``
    masks : sequence of K bool Tensors, broadcastable to ``global_t``
    weights : sequence of K floats (normalised here)
    rule : {"keep_global", "renormalise"}

    Returns
    -------
    Tensor, shape of ``global_t``
    """
    if len(locals_) != len(masks) or not locals_:
        raise ValueError(f"need as many masks as tensors (>= 1); got {len(locals_)} and {len(masks)}.")
    p = normalize_weights(weights, len(locals_), like=global_t)
    acc = torch.float64 if global_t.dtype == torch.float64 else torch.float32
    g = global_t.to(acc)
    if rule == "keep_global":
        out = g.clone()
        for pk, x, m in zip(p, locals_, masks):
            out = out + pk.to(acc) * m.to(acc) * (x.to(acc) - g)
        return out.to(global_t.dtype)
    if rule == "renormalise":
        num, den = torch.zeros_like(g), torch.zeros_like(g)
        for pk, x, m in zip(p, locals_, masks):
            w = pk.to(acc) * m.to(acc)
            num, den = num + w * x.to(acc), den + w
        out = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), g)
        return out.to(global_t.dtype)
    raise ValueError(f"aggregation rule must be 'keep_global' or 'renormalise'; got {rule!r}.")


def rank_mask(rank: int, idx: Tensor) -> Tensor:
    """Boolean (r,) mask of the kept rank indices ``idx``."""
    mask = torch.zeros(int(rank), dtype=torch.bool)
    mask[idx.to(torch.long)] = True
    return mask


def partial_rank_aggregate(
    A_g: Tensor, B_g: Tensor, As: Sequence[Tensor], Bs: Sequence[Tensor], masks: Sequence[Tensor],
    weights: Sequence[float] | Tensor, rule: AggregationRule = "keep_global",
) -> tuple[Tensor, Tensor]:
    r"""Separate aggregation of LoRA factors of which each device sent the ranks in its mask [R].

    Row :math:`i` of :math:`A` (``(r, n)``) and column :math:`i` of :math:`B` (``(d, r)``) form
    rank component :math:`i`; device :math:`k` sent the components with ``masks[k][i]`` true.
    :func:`masked_aggregate` with the rank mask broadcast over rows of ``A`` and columns of
    ``B`` (papers.md §2.5 step 4).

    Returns
    -------
    A : Tensor, shape (r, n)
    B : Tensor, shape (d, r)
    """
    check_factors(A_g, B_g)
    A = masked_aggregate(A_g, As, [m[:, None] for m in masks], weights, rule)
    B = masked_aggregate(B_g, Bs, [m[None, :] for m in masks], weights, rule)
    return A, B


# --------------------------------------------------------------------------- SOFT selection
def soft_select(
    A_g: Tensor, B_g: Tensor, A_k: Tensor, B_k: Tensor, m: int,
    res_A: Tensor | None = None, res_B: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    r"""SOFT rank selection of one device's factors, with optional error feedback [kim2025soft] [R].

    The corrected factors add the residual carried from earlier rounds to the local factors,
    :math:`\tilde A_k = A_k + e^A_k`, :math:`\tilde B_k = B_k + e^B_k` (residuals are in update
    space, relative to the round-start global factors :math:`\bar A, \bar B`). The importance
    :math:`s_i = \|\tilde b_i\|\,\|\tilde a_i\|` ranks the components
    (:func:`~airtune.lora.ops.rank_importance`), the top ``m`` are sent, and the new residual is
    the unsent part of the corrected update:

    .. math::
        e^{A\prime}_k = (1 - \mathbb 1_{\mathcal M})\odot(\tilde A_k - \bar A),\qquad
        \text{sent} + e' = \tilde A_k - \bar A \ \text{on every entry}.

    Returns
    -------
    A_c, B_c : Tensor
        Corrected factors (what the sent components are taken from).
    mask : bool Tensor, shape (r,)
        Kept components :math:`\mathcal M` (top ``m`` scores, ties to the lower index).
    scores : Tensor, shape (r,)
    new_res_A, new_res_B : Tensor
        Residuals of the unsent components (zero on sent ones).
    """
    _, r, _ = check_factors(A_k, B_k)
    A_c = A_k if res_A is None else A_k + res_A
    B_c = B_k if res_B is None else B_k + res_B
    scores = rank_importance(A_c, B_c)
    if not 0 <= m <= r:
        raise ValueError(f"kept components m must be in [0, {r}]; got {m}.")
    order = torch.argsort(scores, descending=True, stable=True)
    mask = rank_mask(r, order[:m])
    res_A2, res_B2 = split_residual(A_c - A_g, mask[:, None]), split_residual(B_c - B_g, mask[None, :])
    return A_c, B_c, mask, scores, res_A2, res_B2


def split_residual(update: Tensor, mask: Tensor) -> Tensor:
    r"""Unsent part :math:`(1 - \mathbb 1_{\rm mask})\odot u` of an update (error feedback)."""
    return torch.where(mask, torch.zeros_like(update), update)


# --------------------------------------------------------------------------- naive top-k
def kept_elements(numel: int, keep_ratio: float) -> int:
    r"""Entries a top-k upload keeps: :math:`k = \lceil \kappa\,N \rceil`, at least 1 [R]."""
    if not 0 < keep_ratio <= 1:
        raise ValueError(f"keep_ratio must lie in (0, 1]; got {keep_ratio}.")
    return max(1, min(int(numel), math.ceil(round(keep_ratio * numel, 9))))


def topk_mask(x: Tensor, k: int) -> Tensor:
    """Boolean mask of the ``k`` entries of largest magnitude (ties to the lower flat index)."""
    n = x.numel()
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, {n}]; got {k}.")
    order = torch.argsort(x.detach().abs().reshape(-1), descending=True, stable=True)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[order[:k]] = True
    return mask.reshape(x.shape)


def topk_index_bits(numel: int, kept: int, coding: TopkIndexCoding = "position") -> int:
    r"""Bits naming the kept entries of an ``numel``-entry tensor [R].

    .. math::
        I_{\rm position} = k\,\lceil\log_2 N\rceil,\qquad I_{\rm mask} = N,\qquad
        I_{\rm min} = \min(I_{\rm position}, I_{\rm mask})
    """
    if not 0 <= kept <= numel:
        raise ValueError(f"kept entries must be in [0, {numel}]; got {kept}.")
    pos = kept * max(1, (int(numel) - 1).bit_length())
    if coding == "position":
        return pos
    if coding == "mask":
        return int(numel)
    if coding == "min":
        return min(pos, int(numel))
    raise ValueError(f"index coding must be 'position', 'mask' or 'min'; got {coding!r}.")


def topk_payload_bits(numels: Sequence[int], kept: Sequence[int], bits_per_value: int = 32,
                      coding: TopkIndexCoding = "position") -> int:
    r"""Upload of element-wise top-k tensors: :math:`\sum_j k_j q + I(N_j, k_j)` [R]."""
    if len(numels) != len(kept):
        raise ValueError("need one kept count per tensor")
    return int(sum(k * bits_per_value + topk_index_bits(n, k, coding) for n, k in zip(numels, kept)))


# --------------------------------------------------------------------------- SVD oracle
def svd_truncate(A: Tensor, B: Tensor, m: int) -> tuple[Tensor, Tensor, Tensor]:
    r"""Rank-``m`` truncated SVD of :math:`BA` as factors, zero-padded to rank :math:`r` [R].

    .. math:: BA = U\Sigma V^\top,\qquad B_m = [U_{:,:m}\Sigma_{:m}, 0],\quad A_m = [V^\top_{:m}; 0]

    so :math:`B_mA_m` is the Eckart--Young best rank-``m`` approximation and the factors keep
    the ``(r, n)``/``(d, r)`` shapes. Costs the product :math:`O(dnr)` plus an SVD -- the
    compute SOFT avoids (papers.md §2.5).

    Returns
    -------
    A_m : Tensor, shape (r, n)
    B_m : Tensor, shape (d, r)
    sigma : Tensor, shape (min(d, n),)
        All singular values of :math:`BA` (descending).
    """
    d, r, n = check_factors(A, B)
    if not 0 <= m <= r:
        raise ValueError(f"m must be in [0, {r}]; got {m}.")
    U, S, Vh = torch.linalg.svd((B @ A).to(torch.float64 if A.dtype == torch.float64 else torch.float32),
                                full_matrices=False)
    A_m = torch.zeros_like(A)
    B_m = torch.zeros_like(B)
    A_m[:m] = Vh[:m].to(A.dtype)
    B_m[:, :m] = (U[:, :m] * S[:m]).to(B.dtype)
    return A_m, B_m, S


def singular_values_from_factors(A: Tensor, B: Tensor) -> Tensor:
    r"""The :math:`r` largest singular values of :math:`BA` without forming it [R].

    :math:`B = Q_BR_B`, :math:`A^\top = Q_AR_A` (thin QR) give :math:`BA = Q_B(R_BR_A^\top)Q_A^\top`,
    so the singular values are those of the :math:`r\times r` matrix :math:`R_BR_A^\top`:
    :math:`O(r^2(d+n))`. Used to check how close SOFT's scores are to the true spectrum.
    """
    check_factors(A, B)
    acc = torch.float64 if A.dtype == torch.float64 else torch.float32
    _, R_b = torch.linalg.qr(B.to(acc))
    _, R_a = torch.linalg.qr(A.T.to(acc))
    return torch.linalg.svdvals(R_b @ R_a.T)


# --------------------------------------------------------------------------- regulariser
def orthogonality_penalty_grad(A: Tensor, B: Tensor) -> tuple[Tensor, Tensor]:
    r"""Closed-form gradient of :func:`~airtune.lora.ops.orthogonality_penalty` [R].

    .. math::
        \frac{\partial}{\partial A}\|AA^\top - I\|_F^2 = 4\,(AA^\top - I)A,\qquad
        \frac{\partial}{\partial B}\|B^\top B - \mathrm{diag}(B^\top B)\|_F^2 = 4\,B\,O,
        \quad O = B^\top B - \mathrm{diag}(B^\top B)
    """
    _, r, _ = check_factors(A, B)
    eye = torch.eye(r, dtype=A.dtype)
    gram_b = B.T @ B
    off = gram_b - torch.diag_embed(torch.diagonal(gram_b))
    return 4 * (A @ A.T - eye) @ A, 4 * B @ off
