r"""Heterogeneous-rank LoRA aggregation: HetLoRA, FlexLoRA and FLoRA (pure tensor maths).

Layout and scale conventions are those of :mod:`airtune.lora.ops`: ``A_k: (r_k, n)``,
``B_k: (d, r_k)``, effective update :math:`s_kB_kA_k` with :math:`s_k=\alpha/r_k`. Because
the scales differ with the rank, every rule here folds :math:`s_k` into :math:`B_k` before
combining (the combined factors carry scale 1: their product *is* the effective update) and
divides by the receiving device's own scale :math:`s_{\rm target}` when redistributing. Hence
a single participant's effective update survives every aggregate/redistribute round trip.
This scale handling is our convention [R]; the papers state their rules on unscaled
:math:`B_kA_k`.

HetLoRA's rules live in :mod:`airtune.lora.ops_hetlora` and are re-exported here; FLoRA's
exact stacking and FlexLoRA's SVD redistribution (papers.md §4.5, §4.3) follow below.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor

from airtune.lora.checks import (
    Weights,
    accumulation_dtype,
    as_scales,
    check_factor_lists,
    check_factors,
    normalize_weights,
)

__all__ = [
    "flexlora_aggregate",
    "flexlora_svd",
    "flexlora_redistribute",
    "flora_stack",
    "flora_merge",
]


# --------------------------------------------------------------------------- FLoRA
def flora_stack(
    As: Sequence[Tensor], Bs: Sequence[Tensor], scales: Weights, weights: Weights
) -> tuple[Tensor, Tensor]:
    r"""FLoRA stacking aggregation [wang2024flora] [K, C; scale R].

    .. math::
        A_{\rm stk} = \begin{bmatrix}p_1A_1\\ \vdots\\ p_KA_K\end{bmatrix},\quad
        B_{\rm stk} = [\,s_1B_1\ \cdots\ s_KB_K\,],\quad
        B_{\rm stk}A_{\rm stk} = \sum_k p_k s_kB_kA_k

    exact for any heterogeneous ranks. The LoRA scale :math:`s_k` is folded into ``B`` so the
    stacked pair carries scale 1; merge it with :func:`flora_merge`.

    Parameters
    ----------
    As : sequence of K Tensors, each (r_k, n)
    Bs : sequence of K Tensors, each (d, r_k)
    scales : sequence of float or Tensor, shape (K,)
        :math:`s_k = \alpha / r_k`.
    weights : sequence of float or Tensor, shape (K,)
        Data sizes (normalised here).

    Returns
    -------
    A_stk : Tensor, shape (sum r_k, n)
    B_stk : Tensor, shape (d, sum r_k)
    """
    _, ranks, _ = check_factor_lists(As, Bs)
    p = normalize_weights(weights, len(As), like=As[0])
    s = as_scales(scales, len(As), like=As[0])
    rk = torch.tensor(ranks, device=p.device)
    row_w = torch.repeat_interleave(p, rk)  # (sum r_k,)
    col_s = torch.repeat_interleave(s, rk)  # (sum r_k,)
    A_stk = torch.cat([A.to(p.dtype) for A in As], dim=0) * row_w[:, None]
    B_stk = torch.cat([B.to(p.dtype) for B in Bs], dim=1) * col_s[None, :]
    return A_stk.to(As[0].dtype), B_stk.to(Bs[0].dtype)


def flora_merge(W: Tensor, A_stk: Tensor, B_stk: Tensor) -> Tensor:
    r"""Merge a stacked FLoRA update into the frozen base weight [wang2024flora] [K].

    .. math:: W \leftarrow W + B_{\rm stk}A_{\rm stk}

    Returns a new tensor (in ``W``'s dtype); the device then re-initialises a fresh LoRA.

    Parameters
    ----------
    W : Tensor, shape (d, n)
    A_stk : Tensor, shape (R, n)
    B_stk : Tensor, shape (d, R)
        Scale folded in (:func:`flora_stack`).

    Returns
    -------
    Tensor, shape (d, n)
    """
    d, _, n = check_factors(A_stk, B_stk)
    if tuple(W.shape) != (d, n):
        raise ValueError(f"W has shape {tuple(W.shape)} but the stacked update is ({d}, {n}).")
    return W + (B_stk @ A_stk).to(W.dtype)


# --------------------------------------------------------------------------- FlexLoRA
def flexlora_aggregate(
    As: Sequence[Tensor], Bs: Sequence[Tensor], scales: Weights, weights: Weights
) -> Tensor:
    r"""FlexLoRA full-size aggregation of effective updates [bai2024flexlora] [K].

    .. math:: \Delta W = \sum_k p_k\,s_kB_kA_k

    Exact for heterogeneous ranks; computed as one ``(d, sum r_k) @ (sum r_k, n)`` product of
    the FLoRA stack. The scale :math:`s_k=\alpha/r_k` is applied here, so ``delta`` is the
    effective update.

    Parameters
    ----------
    As : sequence of K Tensors, each (r_k, n)
    Bs : sequence of K Tensors, each (d, r_k)
    scales : sequence of float or Tensor, shape (K,)
    weights : sequence of float or Tensor, shape (K,)
        Data sizes (normalised here).

    Returns
    -------
    Tensor, shape (d, n)
    """
    A_stk, B_stk = flora_stack(As, Bs, scales, weights)
    return B_stk @ A_stk


def flexlora_svd(delta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""Thin SVD of the ``(d, n)`` aggregate (not of its transpose) [bai2024flexlora] [K].

    .. math:: \Delta W = U\,\mathrm{diag}(S)\,V^\top

    Some public FlexLoRA code decomposes the transpose, which swaps the roles of ``U`` and
    ``V`` and so of ``B`` and ``A``; here ``U`` spans the output space (``B``'s columns) and
    ``Vh`` the input space (``A``'s rows). Half precision is computed in float32. Compute once
    per matrix and pass to :func:`flexlora_redistribute` for every device rank.

    Parameters
    ----------
    delta : Tensor, shape (d, n)

    Returns
    -------
    U : Tensor, shape (d, q)
    S : Tensor, shape (q,)
    Vh : Tensor, shape (q, n)
        ``q = min(d, n)``, singular values descending.
    """
    if delta.ndim != 2:
        raise ValueError(f"delta must be a (d, n) matrix; got shape {tuple(delta.shape)}.")
    return cast("tuple[Tensor, Tensor, Tensor]",
                torch.linalg.svd(delta.to(accumulation_dtype(delta.dtype)), full_matrices=False))


def flexlora_redistribute(
    delta: Tensor,
    r_k: int,
    scale_k: float,
    svd: tuple[Tensor, Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    r"""FlexLoRA redistribution by truncated SVD [bai2024flexlora] [K; scale R].

    .. math::
        B_k = U_{[:,:r_k]}\,\mathrm{diag}(S_{[:r_k]})\,/\,s_k,\qquad
        A_k = V^\top_{[:r_k,:]}

    Singular values are folded into ``B`` (``A`` has orthonormal rows), and the device's own
    scale :math:`s_k=\alpha/r_k` is divided out, so :math:`s_kB_kA_k` is the best rank-``r_k``
    approximation of ``delta`` (Eckart--Young). The SVD is of the ``(d, n)`` delta itself, so
    ``B_k`` is ``(d, r_k)`` and ``A_k`` is ``(r_k, n)`` in PEFT layout. If ``r_k > min(d, n)``
    the missing components are zero.

    Parameters
    ----------
    delta : Tensor, shape (d, n)
        Effective aggregate from :func:`flexlora_aggregate`.
    r_k : int
        Receiving device's rank (>= 1).
    scale_k : float
        Receiving device's :math:`s_k`.
    svd : (U, S, Vh), optional
        :func:`flexlora_svd` of ``delta``, to avoid recomputing it per device.

    Returns
    -------
    A_k : Tensor, shape (r_k, n)
    B_k : Tensor, shape (d, r_k)
    """
    if r_k < 1:
        raise ValueError(f"r_k must be >= 1; got {r_k}.")
    if not scale_k > 0:
        raise ValueError(f"scale_k must be positive; got {scale_k}.")
    U, S, Vh = flexlora_svd(delta) if svd is None else svd
    d, n = delta.shape
    if U.shape[0] != d or Vh.shape[1] != n:
        raise ValueError(
            f"svd factors U{tuple(U.shape)}, Vh{tuple(Vh.shape)} do not match delta ({d}, {n}); "
            "pass flexlora_svd(delta) of the (d, n) delta itself, not of its transpose."
        )
    q = min(r_k, S.shape[0])
    A_k = Vh.new_zeros(r_k, n)
    B_k = U.new_zeros(d, r_k)
    A_k[:q] = Vh[:q]
    B_k[:, :q] = U[:, :q] * (S[:q] / scale_k)
    return A_k.to(delta.dtype), B_k.to(delta.dtype)
