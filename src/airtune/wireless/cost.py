r"""Per-round cost model: payload bits, compute/communication latency, energy (pure numpy).

All per-device quantities have shape ``(K,)``; scalars broadcast.

Sources: papers.md §1.3 [R] (latency :math:`c n_b / f` + bits/rate, energy
:math:`\kappa c n_b I f^2 + p S / r`), §3.3 [R] (LoRA payload :math:`N_{ad} r (d_{in}+d_{out}) q`,
compute + upload latency and energy); none of these is a paper's own equation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "RoundCost",
    "comm_latency_s",
    "compute_energy_j",
    "compute_latency_s",
    "device_latency_s",
    "lora_payload_bits",
    "payload_bits",
    "payload_bits_from_itemsizes",
    "round_costs",
    "round_latency_s",
    "server_compute_s",
    "tx_energy_j",
]


# --------------------------------------------------------------------------- payload


def payload_bits(numels: ArrayLike, bits_per_value: ArrayLike = 32) -> int:
    r"""Size of one message made of several tensors, in bits.

    Parameters
    ----------
    numels : int or array_like of int, shape (T,)
        Number of elements of each of the :math:`T` tensors.
    bits_per_value : int or array_like of int, shape (T,), default 32
        Bits per element :math:`q_j` (32 for fp32, 16 for fp16/bf16), one or per tensor.

    Returns
    -------
    int
        :math:`S` in bits.

    Notes
    -----
    .. math:: S = \sum_{j=1}^{T} n_j\, q_j

    Source: papers.md §1.3 / §3.3 [R].
    """
    n = np.asarray(numels, dtype=np.int64)
    q = np.asarray(bits_per_value, dtype=np.int64)
    if np.any(n < 0) or np.any(q < 0):
        raise ValueError("numels and bits_per_value must be >= 0")
    return int(np.sum(n * q))


def payload_bits_from_itemsizes(numels: ArrayLike, itemsize_bytes: ArrayLike) -> int:
    r"""Size of one message from element counts and bytes per element (``element_size()``).

    Parameters
    ----------
    numels : int or array_like of int, shape (T,)
        Number of elements of each tensor.
    itemsize_bytes : int or array_like of int, shape (T,)
        Bytes per element of each tensor (4 for fp32, 2 for fp16/bf16).

    Returns
    -------
    int
        :math:`S` in bits.

    Notes
    -----
    .. math:: S = \sum_{j} 8\, n_j\, s_j

    Source: papers.md §1.3 [R].
    """
    return payload_bits(numels, 8 * np.asarray(itemsize_bytes, dtype=np.int64))


def lora_payload_bits(
    rank: ArrayLike,
    in_out_dims: Iterable[Sequence[int]],
    bits_per_value: int = 32,
) -> np.ndarray:
    r"""Bits of the LoRA factors :math:`(A, B)` of every adapted matrix, per device rank.

    Parameters
    ----------
    rank : int or array_like of int, shape (K,)
        LoRA rank :math:`r_k` of each device's module.
    in_out_dims : iterable of (d_in, d_out)
        Shapes of the adapted weight matrices (e.g. 24 pairs (768, 768) for
        :math:`W_q, W_v` in 12 RoBERTa-base layers).
    bits_per_value : int, default 32
        Bits per element :math:`q`.

    Returns
    -------
    numpy.ndarray of int64, shape (K,)
        Payload in bits (RoBERTa-base, q/v, r = 8, fp32: 9,437,184 bits).

    Notes
    -----
    .. math:: S_k = r_k\, q \sum_{\ell} \big(d^{\ell}_{\mathrm{in}} + d^{\ell}_{\mathrm{out}}\big)

    Source: papers.md §3.3 step 3 [R].
    """
    dims = np.asarray(list(in_out_dims), dtype=np.int64).reshape(-1, 2)  # (L, 2)
    per_rank = int(dims.sum()) * int(bits_per_value)
    return np.asarray(rank, dtype=np.int64) * per_rank


# --------------------------------------------------------------------------- latency / energy


def compute_latency_s(
    cycles_per_sample: ArrayLike, num_samples: ArrayLike, cpu_freq_hz: ArrayLike
) -> np.ndarray:
    r"""Local computation time.

    Parameters
    ----------
    cycles_per_sample : float or array_like, shape (K,)
        Cycles per training sample :math:`c_k`.
    num_samples : float or array_like, shape (K,)
        Samples processed in the round :math:`D_k` (local steps x batch size).
    cpu_freq_hz : float or array_like, shape (K,)
        Processor frequency :math:`f_k` in Hz, > 0.

    Returns
    -------
    numpy.ndarray, shape (K,)
        Time in s.

    Notes
    -----
    .. math:: \tau_k = \frac{c_k D_k}{f_k}

    Source: papers.md §1.3 / §3.3 [R].
    """
    c = np.asarray(cycles_per_sample, dtype=float)
    return cast(np.ndarray, c * np.asarray(num_samples, dtype=float) / np.asarray(cpu_freq_hz, dtype=float))


def compute_energy_j(
    kappa: float, cycles_per_sample: ArrayLike, num_samples: ArrayLike, cpu_freq_hz: ArrayLike
) -> np.ndarray:
    r"""Local computation energy (dynamic CMOS power model).

    Parameters
    ----------
    kappa : float
        Effective switched capacitance :math:`\kappa` (e.g. 1e-28).
    cycles_per_sample : float or array_like, shape (K,)
        Cycles per training sample :math:`c_k`.
    num_samples : float or array_like, shape (K,)
        Samples processed in the round :math:`D_k`.
    cpu_freq_hz : float or array_like, shape (K,)
        Processor frequency :math:`f_k` in Hz.

    Returns
    -------
    numpy.ndarray, shape (K,)
        Energy in J.

    Notes
    -----
    .. math:: E^{\mathrm{cmp}}_k = \kappa\, c_k D_k f_k^2

    Source: papers.md §1.3 / §3.3 [R].
    """
    f = np.asarray(cpu_freq_hz, dtype=float)
    c = np.asarray(cycles_per_sample, dtype=float)
    return cast(np.ndarray, kappa * c * np.asarray(num_samples, dtype=float) * f**2)


def comm_latency_s(payload_bits: ArrayLike, rate_bps: ArrayLike) -> np.ndarray:
    r"""Transmission time of a payload at a given rate.

    Parameters
    ----------
    payload_bits : float or array_like, shape (K,)
        Payload :math:`S_k` in bits, >= 0.
    rate_bps : float or array_like, shape (K,)
        Rate :math:`r_k` in bit/s, >= 0.

    Returns
    -------
    numpy.ndarray, shape (K,)
        Time in s: 0 where the payload is 0 (whatever the rate), ``inf`` where the payload is
        positive and the rate is 0. No warnings.

    Notes
    -----
    .. math:: T^{\mathrm{com}}_k = \frac{S_k}{r_k}

    Source: papers.md §1.3 [R].
    """
    s, r = np.broadcast_arrays(
        np.asarray(payload_bits, dtype=float), np.asarray(rate_bps, dtype=float)
    )
    out = np.where(s > 0, np.inf, 0.0)
    np.divide(s, r, out=out, where=(s > 0) & (r > 0))
    return out


def tx_energy_j(power_w: ArrayLike, time_s: ArrayLike) -> np.ndarray:
    r"""Transmission energy.

    Parameters
    ----------
    power_w : float or array_like, shape (K,)
        Transmit power :math:`p_k` in W, >= 0.
    time_s : float or array_like, shape (K,)
        Transmission time in s (may be ``inf``).

    Returns
    -------
    numpy.ndarray, shape (K,)
        Energy in J; 0 where the power or the time is 0 (so ``0 * inf`` gives 0, not nan).

    Notes
    -----
    .. math:: E^{\mathrm{com}}_k = p_k\, T^{\mathrm{com}}_k

    Source: papers.md §1.3 [R].
    """
    p, t = np.broadcast_arrays(np.asarray(power_w, dtype=float), np.asarray(time_s, dtype=float))
    out = np.zeros(p.shape)
    np.multiply(p, t, out=out, where=(p != 0) & (t != 0))
    return out


# --------------------------------------------------------------------------- one round


@dataclass(frozen=True, eq=False)
class RoundCost:
    r"""Costs of one round. Per-device arrays are 0 for devices that are not scheduled.

    Attributes
    ----------
    selected : numpy.ndarray of bool, shape (K,)
        Scheduled devices.
    compute_s, server_s, uplink_s, downlink_s, latency_s : numpy.ndarray, shape (K,)
        Device compute, edge-server compute, uplink, downlink and total time per device, in s.
    compute_energy_j, tx_energy_j, energy_j : numpy.ndarray, shape (K,)
        Compute, transmission and total energy per device, in J.
    round_latency_s : float
        Synchronous round time :math:`\max_{k \in \mathcal S} T_k` over every *scheduled* device,
        delivered or not (the server waits for each scheduled upload's slot; 0 if none scheduled).
    total_energy_j : float
        :math:`\sum_{k \in \mathcal S} E_k`.
    """

    selected: np.ndarray
    compute_s: np.ndarray
    server_s: np.ndarray
    uplink_s: np.ndarray
    downlink_s: np.ndarray
    latency_s: np.ndarray
    compute_energy_j: np.ndarray
    tx_energy_j: np.ndarray
    energy_j: np.ndarray
    round_latency_s: float
    total_energy_j: float


def round_costs(
    *,
    cycles_per_sample: ArrayLike,
    num_samples: ArrayLike,
    cpu_freq_hz: ArrayLike,
    kappa: float,
    power_w: ArrayLike,
    uplink_bits: ArrayLike,
    uplink_rate_bps: ArrayLike,
    downlink_bits: ArrayLike = 0.0,
    downlink_rate_bps: ArrayLike = np.inf,
    server_s: ArrayLike = 0.0,
    selected: ArrayLike | None = None,
) -> RoundCost:
    r"""Latency and energy of every scheduled device in one round.

    Parameters
    ----------
    cycles_per_sample : float or array_like, shape (K,)
        Cycles per training sample :math:`c_k`.
    num_samples : float or array_like, shape (K,)
        Samples processed in the round :math:`D_k` (local steps x batch size).
    cpu_freq_hz : float or array_like, shape (K,)
        Processor frequency :math:`f_k` in Hz.
    kappa : float
        Effective switched capacitance.
    power_w : float or array_like, shape (K,)
        Uplink transmit power :math:`p_k` in W.
    uplink_bits : float or array_like, shape (K,)
        Uplink payload :math:`S^{\mathrm{ul}}_k` in bits.
    uplink_rate_bps : float or array_like, shape (K,)
        Uplink rate :math:`r_k` in bit/s.
    downlink_bits : float or array_like, shape (K,), default 0.0
        Downlink payload :math:`S^{\mathrm{dl}}_k` in bits.
    downlink_rate_bps : float or array_like, shape (K,), default inf
        Downlink rate :math:`r^{\mathrm{dl}}_k` in bit/s (``inf``: negligible downlink time).
    server_s : float or array_like, shape (K,), default 0.0
        Edge-server compute time :math:`\tau^{\mathrm{srv}}_k` spent on the device's work in s
        (split learning's encoder; :func:`server_compute_s`).
    selected : array_like of bool, shape (K,), optional
        Scheduled devices; default all. Shape ``(K,)`` is taken from the broadcast of all
        per-device arguments.

    Returns
    -------
    RoundCost
        Per-device costs (0 where not scheduled), the round latency and the total energy.

    Notes
    -----
    .. math::
        T_k = \frac{c_k D_k}{f_k} + \tau^{\mathrm{srv}}_k + \frac{S^{\mathrm{ul}}_k}{r_k}
            + \frac{S^{\mathrm{dl}}_k}{r^{\mathrm{dl}}_k},
        \qquad
        E_k = \kappa c_k D_k f_k^2 + p_k \frac{S^{\mathrm{ul}}_k}{r_k},
        \qquad
        T = \max_{k\in\mathcal S} T_k

    The sum is paper 1's per-round latency (papers.md §1.3 [R]: the per-iteration exchanges of
    split learning add up); server time is 0 for every other strategy. Receive energy is not
    modelled. Source: papers.md §1.3 / §3.3 [R].
    """
    c, d, f, p, s_ul, r_ul, s_dl, r_dl, t_srv = np.broadcast_arrays(
        *(
            np.asarray(x, dtype=float)
            for x in (cycles_per_sample, num_samples, cpu_freq_hz, power_w,
                      uplink_bits, uplink_rate_bps, downlink_bits, downlink_rate_bps, server_s)
        )
    )
    sel = np.ones(c.shape, bool) if selected is None else np.broadcast_to(
        np.asarray(selected, dtype=bool), c.shape
    )

    def masked(x: np.ndarray) -> np.ndarray:
        return np.where(sel, x, 0.0)

    compute_s = masked(compute_latency_s(c, d, f))
    uplink_s = masked(comm_latency_s(s_ul, r_ul))
    downlink_s = masked(comm_latency_s(s_dl, r_dl))
    server_s = masked(t_srv)
    latency_s = device_latency_s(compute_s, server_s, uplink_s, downlink_s)
    cmp_j = masked(compute_energy_j(kappa, c, d, f))
    com_j = masked(tx_energy_j(p, uplink_s))
    energy_j = cmp_j + com_j
    return RoundCost(
        selected=np.array(sel),
        compute_s=compute_s,
        server_s=server_s,
        uplink_s=uplink_s,
        downlink_s=downlink_s,
        latency_s=latency_s,
        compute_energy_j=cmp_j,
        tx_energy_j=com_j,
        energy_j=energy_j,
        round_latency_s=round_latency_s(latency_s, sel),
        total_energy_j=float(np.sum(energy_j)),
    )


def device_latency_s(compute_s: ArrayLike, server_s: ArrayLike, uplink_s: ArrayLike,
                     downlink_s: ArrayLike) -> np.ndarray:
    r"""A device's round latency :math:`T_k = \tau^{\mathrm{cmp}}_k + \tau^{\mathrm{srv}}_k + t^{\mathrm{ul}}_k
    + t^{\mathrm{dl}}_k` in s, shape (K,): the one definition that :func:`round_costs` (the runner)
    and the planners (``allocation/planner.planned_latency_s``) use. papers.md §1.3 [R]."""
    return cast(np.ndarray, np.asarray(compute_s, float) + np.asarray(server_s, float) + np.asarray(uplink_s, float)
                + np.asarray(downlink_s, float))


def round_latency_s(latency_s: ArrayLike, selected: ArrayLike) -> float:
    """Synchronous round latency: the largest :math:`T_k` over every scheduled device (0 if none)."""
    sel = np.asarray(selected, bool)
    return float(np.max(np.asarray(latency_s, float), initial=0.0, where=sel))


def server_compute_s(flops_per_sample: float, num_samples: ArrayLike, server_flops_per_s: float,
                     selected: ArrayLike) -> np.ndarray:
    r"""Edge-server compute time of each scheduled device's work, shape (K,).

    .. math:: \tau^{\mathrm{srv}}_k = \frac{F^{\mathrm{srv}} D_k}{F_{\mathrm{server}} / N},
        \qquad N = |\mathcal S|

    The server's throughput :math:`F_{\mathrm{server}}` (FLOP/s) is shared equally by the
    :math:`N` scheduled devices, whose encoder passes run in parallel (SFL-V1). Our choice
    (papers.md §1.3 [R] names :math:`\tau^{\mathrm{srv}}_k` without a model). 0 where idle
    or when ``flops_per_sample`` is 0.
    """
    sel = np.asarray(selected, bool)
    n = max(int(sel.sum()), 1)
    if flops_per_sample <= 0:
        return np.zeros(sel.shape)
    return np.where(sel, flops_per_sample * np.asarray(num_samples, float) * n / float(server_flops_per_s), 0.0)
