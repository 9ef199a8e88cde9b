r"""Lower bounds on paper 1's water-filled upload energy, to skip candidate sets that cannot win.

For a candidate set with minimum bandwidths :math:`b^{\min}_k`, the water-filling
(``waterfill.waterfill``) solves

.. math::
    E^\star = \min_b \sum_k Q_k E_k(b_k)\quad\text{s.t.}\quad \sum_k b_k = B,\ b_k \ge b^{\min}_k,

with :math:`E_k` convex and decreasing. Two bounds :math:`\le E^\star`, both cheaper than the
root search of the water-filling:

* **box** (:func:`box_energy_bound_j`): every :math:`b_k \le u_k = B - \sum_{j\ne k}
  b^{\min}_j`, so :math:`E^\star \ge \sum_k Q_k E_k(u_k)`. One vectorised pass.
* **dual** (:func:`dual_energy_bound_j`): weak duality; for any price :math:`\nu \ge 0`,
  :math:`E^\star \ge \min_{b^{\min} \le b \le u} \sum_k \big(Q_k E_k(b_k) + \nu b_k\big) - \nu B`,
  whose minimiser is each device's own price response (``bandwidth_for_marginal_price``):
  one inner solve instead of the water-filling's 15-40. With :math:`\nu` the price of a
  similar set (the previous candidate) it is close to :math:`E^\star`.

Used by ``scheduling.schedule_lyapunov`` to prune the greedy candidates (issue 15: planners at
10,000 devices); a pruned set provably has a larger objective than one already evaluated, so the
chosen set is the same as without pruning. Our own device (papers.md §1.6 is silent on how
the candidates are searched).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from airtune.allocation.split_fed.waterfill import bandwidth_for_marginal_price, upload_energy_j

__all__ = ["box_energy_bound_j", "dual_energy_bound_j", "upper_bandwidth_hz"]


def upper_bandwidth_hz(b_min_hz: np.ndarray, total_bandwidth_hz: float) -> np.ndarray:
    r""":math:`u_k = B - \sum_{j \ne k} b^{\min}_j` (at least :math:`b^{\min}_k`): the most a
    device can get when every other one sits at its minimum."""
    upper: np.ndarray = np.maximum(total_bandwidth_hz - (float(np.sum(b_min_hz)) - b_min_hz), b_min_hz)
    return upper


def _weighted_energy_j(weights: np.ndarray, bandwidth_hz: np.ndarray, payload_bits: np.ndarray,
                       power_w: np.ndarray, channel_gain: np.ndarray, noise_psd_w_per_hz: np.ndarray) -> float:
    energy = upload_energy_j(bandwidth_hz, payload_bits, power_w, channel_gain, noise_psd_w_per_hz)
    return float(np.sum(np.where(weights > 0, weights * energy, 0.0)))


def box_energy_bound_j(weights: np.ndarray, payload_bits: np.ndarray, power_w: np.ndarray,
                       channel_gain: np.ndarray, noise_psd_w_per_hz: np.ndarray, b_min_hz: np.ndarray,
                       total_bandwidth_hz: float) -> float:
    r""":math:`\sum_k Q_k E_k(u_k) \le E^\star` (J x weight); arrays of shape (N,)."""
    upper = upper_bandwidth_hz(b_min_hz, total_bandwidth_hz)
    return _weighted_energy_j(weights, upper, payload_bits, power_w, channel_gain, noise_psd_w_per_hz)


def dual_energy_bound_j(price: float, weights: ArrayLike, payload_bits: ArrayLike, power_w: ArrayLike,
                        channel_gain: ArrayLike, noise_psd_w_per_hz: ArrayLike, b_min_hz: ArrayLike,
                        total_bandwidth_hz: float) -> float:
    r"""The Lagrangian dual function at :math:`\nu` = ``price`` (> 0), :math:`\le E^\star`.

    .. math::
        D(\nu) = \sum_k \big(Q_k E_k(b_k(\nu)) + \nu\, b_k(\nu)\big) - \nu B,\qquad
        b_k(\nu) = \arg\min_{b^{\min}_k \le b \le u_k} Q_k E_k(b) + \nu b .

    The box :math:`b \le u_k` is implied by the constraints, so the bound holds for every
    :math:`\nu > 0`; it is exact at the water-filling's own price.
    """
    w, s, p, h, n0, lo = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (
        weights, payload_bits, power_w, channel_gain, noise_psd_w_per_hz, b_min_hz)))
    upper = upper_bandwidth_hz(lo, total_bandwidth_hz)
    b = bandwidth_for_marginal_price(price, w, s, p, h, n0, lo, upper)
    return _weighted_energy_j(w, b, s, p, h, n0) + price * (float(np.sum(b)) - total_bandwidth_hz)
