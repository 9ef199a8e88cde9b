"""Pure aggregators over tensor dictionaries (no config, no logging)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def normalised_weights(weights: Sequence[float]) -> torch.Tensor:
    """Non-negative weights scaled to sum to one (float64)."""
    w = torch.as_tensor(list(weights), dtype=torch.float64)
    if w.numel() == 0 or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {list(weights)}")
    return w / w.sum()


def fedavg(states: Sequence[dict[str, torch.Tensor]], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """Weighted average of each tensor, key by key [mcmahan2017fedavg].

    .. math:: \\bar\\theta = \\sum_k p_k \\theta_k,\\quad p_k = w_k / \\sum_j w_j

    Accumulates in float64 and casts back to each tensor's dtype. With one state the result
    equals that state exactly.
    """
    p = normalised_weights(weights)
    if len(states) == 1:
        return {k: v.clone() for k, v in states[0].items()}
    out = {}
    for key, ref in states[0].items():
        acc = torch.zeros_like(ref, dtype=torch.float64)
        for pk, s in zip(p, states):
            acc += pk * s[key].to(torch.float64)
        out[key] = acc.to(ref.dtype)
    return out
