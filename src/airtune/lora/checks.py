r"""Validation and dtype helpers shared by the pure LoRA factor maths (torch only).

Checks of the PEFT factor layout (``A: (r, n)``, ``B: (d, r)``; conventions in
:mod:`airtune.lora.ops`), aggregation weights normalised to :math:`p_k = w_k/\sum_j w_j`,
per-device LoRA scales :math:`s_k = \alpha/r_k`, and the accumulation dtype (half precision
is accumulated in float32). No paper formula lives here; used by :mod:`airtune.lora.ops`,
:mod:`airtune.lora.ops_soft`, :mod:`airtune.lora.ops_hetero`, :mod:`airtune.lora.ops_hetlora`
and :mod:`airtune.lora.sparsify`. Bad input raises a one-line ``ValueError`` that names the
shapes or values.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "Weights",
    "check_factor_lists",
    "check_factors",
    "normalize_weights",
    "as_scales",
    "accumulation_dtype",
]

Weights = Sequence[float] | Tensor


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
        p = p.to(device=like.device, dtype=accumulation_dtype(like.dtype))
    return p


def as_scales(scales: Weights, num: int, like: Tensor) -> Tensor:
    s = torch.as_tensor(scales, dtype=torch.float64).detach().cpu()
    if s.ndim == 0:
        s = s.expand(num)
    if s.ndim != 1 or s.numel() != num:
        raise ValueError(f"scales must have shape ({num},), one per device; got {tuple(s.shape)}.")
    if not bool(torch.isfinite(s).all()) or bool((s <= 0).any()):
        raise ValueError(f"LoRA scales alpha/r_k must be finite and positive; got {s.tolist()}.")
    return s.to(device=like.device, dtype=accumulation_dtype(like.dtype))


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulate half-precision inputs in float32; keep float32/float64 as they are."""
    return torch.promote_types(dtype, torch.float32)
