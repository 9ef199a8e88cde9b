r"""What a planner and a strategy tell each other each round: typed records, one per concern.

Two directions, one record type each (issue 13: no untyped dicts between the two):

- :class:`Hints`, strategy -> planner, before the round (``Strategy.planner_hints`` ->
  ``RoundInputs.hints``): facts only the strategy knows, e.g. SOFT's payload table for TSFA or
  the module set for model switching.
- :class:`Directives`, planner -> strategy (``Allocation.directives`` -> ``configure_round``):
  decisions only the planner makes, e.g. a keep ratio per device or module subscriptions.

Each fact has one owner. The model-switching module ranks, for example, are declared once
(``strategy.options.module_ranks``); the planner reads them from :class:`ModuleSetHint` and has
no option of its own for them.

A component declares the kinds it exchanges (``Planner.directives`` / ``needs_hints``,
``Strategy.accepts_directives`` / ``requires_directives`` / ``provides_hints``); a kind is the
name of a field of :class:`Directives` or :class:`Hints`. ``airtune validate`` rejects a pair
whose declarations do not fit (``experiment/validate.py``) and the runner checks, every round,
that what is sent is what was declared.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Directives", "DissimilarityHint", "Hints", "ModuleDirective", "ModuleSetHint", "SoftPayloadHint", "SparsityDirective",
           "directive_kinds", "hint_kinds"]


def _frozen_array(value: Any, dtype: type, name: str, ndim: tuple[int, ...]) -> npt.NDArray[Any]:
    arr: npt.NDArray[Any] = np.array(value, dtype=dtype)
    if arr.ndim not in ndim:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndim))} dimension(s), got shape {arr.shape}")
    arr.setflags(write=False)
    return arr


# ---------------------------------------------------------------------------------- directives
@dataclass(frozen=True, eq=False)
class SparsityDirective:
    r"""Per-device share of the rank to upload (paper 2, TSFA stage 2: :math:`\kappa_k = m_k / r`).

    ``keep_ratio`` has shape (K,), values in [0, 1]; devices not scheduled carry 1.
    """

    keep_ratio: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        arr = _frozen_array(self.keep_ratio, float, "SparsityDirective.keep_ratio", (1,))
        if np.any(arr < 0) or np.any(arr > 1) or not np.all(np.isfinite(arr)):
            raise ValueError(f"SparsityDirective.keep_ratio must lie in [0, 1], got {arr.tolist()}")
        object.__setattr__(self, "keep_ratio", arr)


@dataclass(frozen=True, eq=False)
class ModuleDirective:
    """Module subscriptions (paper 3): a (K,) module index per device (``-1``: idle) or a (K, M)
    boolean subscription matrix (several modules per device)."""

    modules: npt.NDArray[Any]

    def __post_init__(self) -> None:
        arr = np.array(self.modules)
        dtype: type = bool if arr.ndim == 2 else np.int64
        object.__setattr__(self, "modules", _frozen_array(arr, dtype, "ModuleDirective.modules", (1, 2)))


@dataclass(frozen=True, eq=False)
class Directives:
    """Everything a planner directs the strategy to do this round; ``None``: no directive of that kind."""

    sparsity: SparsityDirective | None = None
    modules: ModuleDirective | None = None

    def kinds(self) -> frozenset[str]:
        """Names of the directives present."""
        return frozenset(f.name for f in fields(self) if getattr(self, f.name) is not None)


# --------------------------------------------------------------------------------------- hints
@dataclass(frozen=True, eq=False)
class SoftPayloadHint:
    r"""SOFT's facts for TSFA (paper 2): the trained rank :math:`r`, the upload size
    :math:`S(m)` in bits for :math:`m = 0..r` kept components (head included), and the relative
    truncation-error curve :math:`\epsilon(m)` of the factors' importance scores, shape (r+1,)
    (one curve for all devices) or (K, r+1) (one per device); ``None`` while every score is zero."""

    rank: int
    payload_bits: npt.NDArray[np.float64]
    error_curve: npt.NDArray[np.float64] | None = None
    error_energy: npt.NDArray[np.float64] | None = None
    """(appended, paper 2 item 1) with a (K, r+1) ``error_curve``: each device's absolute
    truncation energy eps_k(0), shape (K,), so the planner can scale the relative curves;
    ``None``: unknown (every device weighs the same)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "rank", int(self.rank))
        bits = _frozen_array(self.payload_bits, float, "SoftPayloadHint.payload_bits", (1,))
        if bits.shape != (self.rank + 1,):
            raise ValueError(f"SoftPayloadHint.payload_bits must have shape ({self.rank + 1},), got {bits.shape}")
        object.__setattr__(self, "payload_bits", bits)
        if self.error_curve is not None:
            curve = _frozen_array(self.error_curve, float, "SoftPayloadHint.error_curve", (1, 2))
            if curve.shape[-1] != self.rank + 1:
                raise ValueError(f"SoftPayloadHint.error_curve must end in {self.rank + 1} values, got {curve.shape}")
            object.__setattr__(self, "error_curve", curve)
        if self.error_energy is not None:
            energy = _frozen_array(self.error_energy, float, "SoftPayloadHint.error_energy", (1,))
            if (self.error_curve is None or self.error_curve.ndim != 2 or energy.shape != self.error_curve.shape[:1]
                    or np.any(energy < 0) or not np.all(np.isfinite(energy))):
                raise ValueError("SoftPayloadHint.error_energy needs a (K, r+1) error_curve and K finite "
                                 f"non-negative values, got shape {energy.shape}")
            object.__setattr__(self, "error_energy", energy)


@dataclass(frozen=True, eq=False)
class ModuleSetHint:
    """The LoRA modules kept at the base station (paper 3): their ranks (M,) and each module's
    exact upload size in bits (M,), LoRA factors and head, as the strategy charges it."""

    ranks: tuple[int, ...]
    payload_bits: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranks", tuple(int(r) for r in self.ranks))
        bits = _frozen_array(self.payload_bits, float, "ModuleSetHint.payload_bits", (1,))
        if bits.shape != (len(self.ranks),):
            raise ValueError(f"ModuleSetHint.payload_bits must have shape ({len(self.ranks)},), got {bits.shape}")
        object.__setattr__(self, "payload_bits", bits)


@dataclass(frozen=True, eq=False)
class Hints:
    """Everything a strategy tells the planner before the round; ``None``: no hint of that kind."""

    soft_payload: SoftPayloadHint | None = None
    modules: ModuleSetHint | None = None
    dissimilarity: DissimilarityHint | None = None
    """(appended, paper 3 item 7) each device's measured update dissimilarity."""

    def kinds(self) -> frozenset[str]:
        """Names of the hints present."""
        return frozenset(f.name for f in fields(self) if getattr(self, f.name) is not None)


def directive_kinds() -> frozenset[str]:
    """Every directive kind a component may declare."""
    return frozenset(f.name for f in fields(Directives))


def hint_kinds() -> frozenset[str]:
    """Every hint kind a component may declare."""
    return frozenset(f.name for f in fields(Hints))


@dataclass(frozen=True, eq=False)
class DissimilarityHint:
    r"""Each device's data heterogeneity as the strategy measured it (paper 3, Theorem 1's
    heterogeneity term): ``values`` (K,) finite, >= 0, unit-free :math:`\delta_k`; ``measured``
    (K,) bool, False where :math:`\delta_k` is the strategy's prior (a device never measured).
    How it is measured is the strategy's concern (``strategies/switching.py``)."""

    values: npt.NDArray[np.float64]
    measured: npt.NDArray[np.bool_]

    def __post_init__(self) -> None:
        vals = _frozen_array(self.values, float, "DissimilarityHint.values", (1,))
        if np.any(vals < 0) or not np.all(np.isfinite(vals)):
            raise ValueError(f"DissimilarityHint.values must be finite and >= 0, got {vals.tolist()}")
        seen = _frozen_array(self.measured, bool, "DissimilarityHint.measured", (1,))
        if seen.shape != vals.shape:
            raise ValueError(f"DissimilarityHint.measured must have shape {vals.shape}, got {seen.shape}")
        object.__setattr__(self, "values", vals)
        object.__setattr__(self, "measured", seen)
