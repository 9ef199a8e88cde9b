r"""SOFT maths on one LoRA pair: rank importance, top-m truncation, orthogonality [kim2025soft].

Sparsified Orthogonal Fine-Tuning (papers.md §2.5, [S] idea, [R] forms): each rank-1
component :math:`b_ia_i^\top` of ``A: (r, n)``, ``B: (d, r)`` (PEFT layout, conventions in
:mod:`airtune.lora.ops`) is scored by :math:`s_i = \|b_i\|_2\,\|a_i\|_2`; a device keeps its
top :math:`m` components, the dropped energy :math:`\sum_{i\notin\mathcal M}s_i^2` is the
truncation error (the table the online stage of TSFA searches over, papers.md §2.6), and an
orthogonality regulariser keeps the scores close to the singular values of ``BA``. Every
function works on *one* adapted matrix; nothing here touches PEFT.

Provenance tags ([K], [C], [R], [S]) are those of ``shared/design/papers.md``.
"""

from __future__ import annotations

from typing import Literal, cast

import torch
from torch import Tensor

from airtune.lora.checks import check_factors

__all__ = [
    "rank_importance",
    "top_m_components",
    "truncation_error_from_scores",
    "truncation_error_curve",
    "orthogonality_error",
    "orthogonality_penalty",
    "normalised_orthogonality_penalty",
    "OrthForm",
    "ORTH_FORMS",
]

OrthForm = Literal["normalised", "gram"]
ORTH_FORMS: tuple[str, ...] = ("normalised", "gram")


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
    return cast(Tensor, torch.linalg.vector_norm(B, dim=0) * torch.linalg.vector_norm(A, dim=1))


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


def normalised_orthogonality_penalty(A: Tensor, B: Tensor, eps: float = 1e-12) -> Tensor:
    r"""Scale-invariant SOFT orthogonality regulariser: squared cosines between components [R].

    .. math::
        \mathcal R_{\rm cos} = \sum_{i\ne j} \cos^2(a_i, a_j) + \sum_{i\ne j} \cos^2(b_i, b_j),
        \qquad \cos(x, y) = \frac{x^\top y}{\|x\|\,\|y\|}

    (``a_i`` rows of ``A``, ``b_i`` columns of ``B``), i.e. :func:`orthogonality_penalty`'s
    off-diagonal Gram terms on unit-normalised rows and columns. Our choice (paper-checks.md
    Paper 2 item 3): the scores :math:`s_i = \|b_i\|\|a_i\|` equal the singular values of
    :math:`BA` exactly when the rows of ``A`` and the columns of ``B`` are mutually orthogonal,
    whatever their norms, so only the angles are penalised. The Gram form's
    :math:`\|\mathrm{offdiag}(B^\top B)\|_F^2` scales as :math:`\|B\|^4` and barely acts
    while ``B`` is small (it starts at 0); this form is invariant to the scale of every row and
    column and lies in :math:`[0, 2r(r-1)]`. A zero row/column (norm below ``eps``) contributes 0.

    Parameters
    ----------
    A : Tensor, shape (r, n)
    B : Tensor, shape (d, r)
    eps : float, default 1e-12
        Floor of the norms (no division by zero at ``B = 0``).

    Returns
    -------
    Tensor, shape ()
    """
    _, r, _ = check_factors(A, B)
    a_hat = A / torch.linalg.vector_norm(A, dim=1, keepdim=True).clamp_min(eps)
    b_hat = B / torch.linalg.vector_norm(B, dim=0, keepdim=True).clamp_min(eps)
    off = 1.0 - torch.eye(r, dtype=A.dtype, device=A.device)
    return cast(Tensor, (((a_hat @ a_hat.T) * off) ** 2).sum() + (((b_hat.T @ b_hat) * off) ** 2).sum())


def _orthogonality_sq(A: Tensor, B: Tensor) -> tuple[Tensor, Tensor]:
    _, r, _ = check_factors(A, B)
    eye = torch.eye(r, dtype=A.dtype, device=A.device)
    gram_a = A @ A.T - eye  # (r, r)
    gram_b = B.T @ B  # (r, r)
    off_b = gram_b - torch.diag_embed(torch.diagonal(gram_b))
    return (gram_a**2).sum(), (off_b**2).sum()
