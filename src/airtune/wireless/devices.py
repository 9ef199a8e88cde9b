r"""Heterogeneous device profiles (compute speed, energy constant, power limit, memory tier).

Source: papers.md §5 [R] (simulator defaults: :math:`f_k \sim \mathcal U[0.5, 2]` GHz,
:math:`\kappa = 10^{-28}`, :math:`p^{\max} = 0.2` W); memory tiers are our own device for
heterogeneous LoRA ranks (papers.md §3.3 [R/?]: UE :math:`k` may train module :math:`m` only if
:math:`r_m \le r_k^{\max}`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from airtune.wireless.units import ghz_to_hz

__all__ = ["DeviceProfiles", "NUM_MEMORY_TIERS", "sample_device_profiles"]

NUM_MEMORY_TIERS = 3
"""Memory tiers: 0 = low, 1 = mid, 2 = high."""


def _frozen(x: ArrayLike, dtype: type) -> np.ndarray:
    arr: np.ndarray = np.array(x, dtype=dtype)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class DeviceProfiles:
    r"""Static per-device capabilities (immutable; arrays are read-only).

    Attributes
    ----------
    cpu_freq_hz : numpy.ndarray, shape (K,)
        Processor frequency :math:`f_k` in Hz (cycles/s).
    cycles_per_sample : numpy.ndarray, shape (K,)
        Processor cycles :math:`c_k` to process one training sample.
    max_power_w : numpy.ndarray, shape (K,)
        Maximum transmit power :math:`p_k^{\max}` in W.
    kappa : float
        Effective switched capacitance :math:`\kappa` (J s^2 / cycle^3), energy
        :math:`\kappa c D f^2`.
    memory_tier : numpy.ndarray of int, shape (K,)
        0 = low, 1 = mid, 2 = high memory (maps to the largest LoRA rank a device can train).
    """

    cpu_freq_hz: np.ndarray
    cycles_per_sample: np.ndarray
    max_power_w: np.ndarray
    kappa: float
    memory_tier: np.ndarray

    def __post_init__(self) -> None:
        fields = {
            "cpu_freq_hz": _frozen(self.cpu_freq_hz, float),
            "cycles_per_sample": _frozen(self.cycles_per_sample, float),
            "max_power_w": _frozen(self.max_power_w, float),
            "memory_tier": _frozen(self.memory_tier, np.int64),
        }
        shapes = {name: arr.shape for name, arr in fields.items()}
        if len(set(shapes.values())) != 1 or fields["cpu_freq_hz"].ndim != 1:
            raise ValueError(f"DeviceProfiles arrays must all have shape (K,): got {shapes}")
        for name, arr in fields.items():
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "kappa", float(self.kappa))

    @property
    def num_devices(self) -> int:
        """Number of devices :math:`K`."""
        return int(self.cpu_freq_hz.shape[0])


def sample_device_profiles(
    rng: np.random.Generator,
    num_devices: int,
    *,
    cycles_per_sample: ArrayLike,
    cpu_freq_ghz_min: float = 0.5,
    cpu_freq_ghz_max: float = 2.0,
    max_power_w: ArrayLike = 0.2,
    kappa: float = 1e-28,
) -> DeviceProfiles:
    r"""Draw heterogeneous device profiles.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness (frequencies first, then memory tiers).
    num_devices : int
        Number of devices :math:`K \ge 0`.
    cycles_per_sample : float or array_like, shape (K,)
        Cycles per training sample :math:`c_k` (a scalar is broadcast to every device).
    cpu_freq_ghz_min, cpu_freq_ghz_max : float, default 0.5, 2.0
        Frequency range in GHz (converted to Hz here), ``0 < min <= max``.
    max_power_w : float or array_like, shape (K,), default 0.2
        Maximum transmit power in W (0.2 W = 23 dBm).
    kappa : float, default 1e-28
        Effective switched capacitance.

    Returns
    -------
    DeviceProfiles
        Arrays of shape (K,).

    Raises
    ------
    ValueError
        If the frequency range is empty or not positive.

    Notes
    -----
    .. math::
        f_k \sim \mathcal U\big[f_{\min}, f_{\max}\big],\qquad
        \mathrm{tier}_k \sim \mathcal U\{0, 1, 2\}

    Source: papers.md §5 [R].
    """
    if not 0.0 < cpu_freq_ghz_min <= cpu_freq_ghz_max:
        raise ValueError(
            f"cpu_freq_ghz_min={cpu_freq_ghz_min}, cpu_freq_ghz_max={cpu_freq_ghz_max}: "
            "need 0 < min <= max"
        )
    k = int(num_devices)
    freq_hz = ghz_to_hz(rng.uniform(cpu_freq_ghz_min, cpu_freq_ghz_max, size=k))  # (K,)
    tier = rng.integers(0, NUM_MEMORY_TIERS, size=k)  # (K,)
    return DeviceProfiles(
        cpu_freq_hz=freq_hz,
        cycles_per_sample=np.broadcast_to(np.asarray(cycles_per_sample, dtype=float), (k,)),
        max_power_w=np.broadcast_to(np.asarray(max_power_w, dtype=float), (k,)),
        kappa=kappa,
        memory_tier=tier,
    )
