r"""Uplink payload of a SOFT-sparsified LoRA update, in bits (pure numpy, no torch).

SOFT [kim2025soft] keeps :math:`m` of the :math:`r` rank-1 components
:math:`b_i a_i^\top` of every adapted ``(d, n)`` matrix and sends the kept columns of ``B``
(``d`` values each), the kept rows of ``A`` (``n`` values each) and the set of kept indices
(papers.md §2.3 [R]):

.. math::
    S(m) = \sum_{\ell=1}^{L} \Big( m_\ell\,(d_\ell + n_\ell)\,q + I(r, m_\ell) \Big),
    \qquad
    I(r, m) = \begin{cases}
        r & \text{mask: one bit per rank index}\\
        \big\lceil \log_2 \binom{r}{m} \big\rceil & \text{combinatorial: index of the subset}\\
        0 & \text{none}
    \end{cases}

with :math:`q` bits per value. Sparsification ratio :math:`\rho = 1 - m / r`
(papers.md §2.3 [R]); :math:`m = \lceil (1-\rho) r \rceil` (§2.5 step 3 [R]).

Choices made here [R]: the index set is sent even at :math:`m = r` (a mask costs :math:`r`
bits, the combinatorial code :math:`\lceil\log_2 1\rceil = 0` bits) and at :math:`m = 0`, so
that :math:`S(m)` is one formula; ``index_coding="none"`` gives the factor bits only, which at
:math:`m = r` equal :func:`airtune.wireless.cost.lora_payload_bits`. How the paper codes the
indices is not known (papers.md §2.9).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "IndexCoding",
    "INDEX_CODINGS",
    "index_bits",
    "kept_from_ratio",
    "soft_payload_bits",
    "soft_payload_table",
    "sparsification_ratio",
]

IndexCoding = Literal["mask", "combinatorial", "none"]
INDEX_CODINGS: tuple[str, ...] = ("mask", "combinatorial", "none")


def _check_rank(rank: int) -> int:
    if int(rank) != rank or int(rank) < 1:
        raise ValueError(f"rank r must be an integer >= 1; got {rank!r}.")
    return int(rank)


def _check_kept(kept: ArrayLike, rank: int) -> np.ndarray:
    m = np.asarray(kept)
    if m.dtype.kind not in "iu" and not (m.dtype.kind == "f" and np.all(m == np.round(m))):
        raise ValueError(f"kept components m must be integers; got {m!r}.")
    m = m.astype(np.int64)
    if np.any(m < 0) or np.any(m > rank):
        raise ValueError(
            f"kept components m must lie in [0, r={rank}]; got values in "
            f"[{int(m.min())}, {int(m.max())}]."
        )
    return m


def _dims(in_out_dims: Iterable[Sequence[int]]) -> np.ndarray:
    dims = np.asarray(list(in_out_dims), dtype=np.int64).reshape(-1, 2)  # (L, 2)
    if dims.shape[0] == 0 or np.any(dims < 1):
        raise ValueError(
            "in_out_dims must list at least one adapted matrix as (d_in, d_out) with positive "
            f"sizes; got {dims.tolist()}."
        )
    return dims


def index_bits(rank: int, kept: ArrayLike, coding: IndexCoding = "mask") -> np.ndarray:
    r"""Bits that say which rank components were kept, for one adapted matrix.

    Parameters
    ----------
    rank : int
        Structural LoRA rank :math:`r \ge 1`.
    kept : int or array_like of int, any shape
        Kept components :math:`0 \le m \le r`.
    coding : {"mask", "combinatorial", "none"}, default "mask"
        Index coding (see Notes).

    Returns
    -------
    numpy.ndarray of int64, shape of ``kept``

    Notes
    -----
    .. math::
        I_{\rm mask}(r, m) = r,\qquad
        I_{\rm comb}(r, m) = \big\lceil \log_2 \tbinom{r}{m} \big\rceil,\qquad
        I_{\rm none} = 0

    The combinatorial count is exact integer arithmetic
    (:math:`\lceil\log_2 x\rceil` = bit length of :math:`x - 1`), valid for any ``r``.
    Source: papers.md §2.3 [R].
    """
    r = _check_rank(rank)
    m = _check_kept(kept, r)
    if coding == "mask":
        return np.full(m.shape, r, dtype=np.int64)
    if coding == "none":
        return np.zeros(m.shape, dtype=np.int64)
    if coding == "combinatorial":
        table = np.array([(math.comb(r, j) - 1).bit_length() for j in range(r + 1)], np.int64)
        return table[m]
    raise ValueError(f"index coding must be one of {INDEX_CODINGS}; got {coding!r}.")


def soft_payload_bits(
    kept: ArrayLike,
    in_out_dims: Iterable[Sequence[int]],
    rank: int,
    bits_per_value: int = 32,
    index_coding: IndexCoding = "mask",
    per_matrix: bool = False,
) -> np.ndarray:
    r"""Uplink bits of a SOFT update that keeps ``kept`` of ``rank`` components per matrix.

    Parameters
    ----------
    kept : int or array_like of int, shape (...) or (..., L) when ``per_matrix``
        Kept components :math:`m` (e.g. one per device, shape (K,)). Without ``per_matrix``
        the same :math:`m` applies to every adapted matrix.
    in_out_dims : iterable of (d_in, d_out), length L
        Shapes of the adapted weight matrices (e.g. 12 pairs (384, 384) for :math:`W_q` of
        MiniLM-L6 plus 12 for :math:`W_v`).
    rank : int
        Structural rank :math:`r`.
    bits_per_value : int, default 32
        Bits per transmitted value :math:`q`.
    index_coding : {"mask", "combinatorial", "none"}, default "mask"
        See :func:`index_bits`.
    per_matrix : bool, default False
        ``kept`` carries one :math:`m_\ell` per adapted matrix on its last axis.

    Returns
    -------
    numpy.ndarray of int64, shape (...)
        :math:`S` in bits.

    Notes
    -----
    .. math:: S = \sum_{\ell=1}^{L} \big( m_\ell (d_\ell + n_\ell) q + I(r, m_\ell) \big)

    Source: papers.md §2.3 [R].
    """
    dims = _dims(in_out_dims)
    r = _check_rank(rank)
    q = int(bits_per_value)
    if q < 1:
        raise ValueError(f"bits_per_value must be >= 1; got {bits_per_value}.")
    m = _check_kept(kept, r)
    per_comp = dims.sum(axis=1) * q  # (L,) bits of one rank-1 component of each matrix
    if per_matrix:
        if m.ndim == 0 or m.shape[-1] != dims.shape[0]:
            raise ValueError(
                f"per_matrix=True needs kept of shape (..., L={dims.shape[0]}); got {m.shape}."
            )
        return (m * per_comp).sum(-1) + index_bits(r, m, index_coding).sum(-1)
    num_mats = dims.shape[0]
    return m * int(per_comp.sum()) + num_mats * index_bits(r, m, index_coding)


def soft_payload_table(
    rank: int,
    in_out_dims: Iterable[Sequence[int]],
    bits_per_value: int = 32,
    index_coding: IndexCoding = "mask",
) -> np.ndarray:
    r"""Payload :math:`S(m)` for every :math:`m = 0..r` (the table TSFA searches over).

    Parameters
    ----------
    rank : int
        Structural rank :math:`r`.
    in_out_dims : iterable of (d_in, d_out)
    bits_per_value : int, default 32
    index_coding : {"mask", "combinatorial", "none"}, default "mask"

    Returns
    -------
    numpy.ndarray of int64, shape (r + 1,)
        Entry ``m`` is :func:`soft_payload_bits` with ``kept = m``.
    """
    r = _check_rank(rank)
    return soft_payload_bits(np.arange(r + 1), in_out_dims, r, bits_per_value, index_coding)


def sparsification_ratio(kept: ArrayLike, rank: int) -> np.ndarray:
    r"""Fraction of the rank components that are dropped.

    .. math:: \rho = 1 - m / r

    Source: papers.md §2.3 [R].
    """
    r = _check_rank(rank)
    return 1.0 - _check_kept(kept, r) / r


def kept_from_ratio(ratio: ArrayLike, rank: int) -> np.ndarray:
    r"""Kept components for a sparsification ratio.

    .. math:: m = \lceil (1 - \rho)\, r \rceil

    Rounded to 12 decimals first so that :math:`\rho = 1 - m/r` maps back to :math:`m`.
    Source: papers.md §2.5 step 3 [R].
    """
    r = _check_rank(rank)
    rho = np.asarray(ratio, dtype=float)
    if np.any(~np.isfinite(rho)) or np.any(rho < 0) or np.any(rho > 1):
        raise ValueError(f"sparsification ratio must lie in [0, 1]; got {rho!r}.")
    return np.ceil(np.round((1.0 - rho) * r, 12)).astype(np.int64)
