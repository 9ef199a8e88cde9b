"""One round's radio and cost bookkeeping: who delivered, how long it took, what it cost.

Pure given its inputs (NumPy only): the runner calls it between training and aggregation. The
link (``wireless/link.py``) decides the charged rate and delivery; ``wireless.cost.round_costs``
is the one definition of device latency, round latency and energy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from airtune.allocation.result import Allocation
from airtune.wireless.channel import ChannelState
from airtune.wireless.cost import RoundCost, round_costs, server_compute_s
from airtune.wireless.devices import DeviceProfiles
from airtune.wireless.link import LinkModel


@dataclass(frozen=True)
class RadioRound:
    """Per-device (K,) radio outcome of one round."""

    uplink_rate_bps: np.ndarray      # the charged rate (0 where idle)
    downlink_rate_bps: np.ndarray
    downlink_bandwidth_hz: np.ndarray
    success_prob: np.ndarray         # probability of the delivery event given the planner's view
    sinr: np.ndarray                 # realised SINR of the upload (0 where idle)
    capacity_bps: np.ndarray         # b log2(1 + sinr): the largest decodable rate
    delivered: np.ndarray            # bool (K,): scheduled and the charged rate is decodable
    cost: RoundCost


def radio_round(link: LinkModel, ch: ChannelState, dev: DeviceProfiles, alloc: Allocation,
                uplink_bits: np.ndarray, downlink_bits: np.ndarray, num_samples: np.ndarray,
                outage_rng: np.random.Generator, compute_fraction: float = 1.0,
                server_flops_per_sample: float = 0.0, server_flops_per_s: float = np.inf) -> RadioRound:
    """Rates, delivery, latency and energy of every device.

    The uplink is charged :meth:`LinkModel.uplink_rate_bps` at the allocated bandwidth and power
    and the realised channel; delivery is decided by :meth:`LinkModel.realise` (the charged rate
    is decodable at the realised SINR); ``success_prob`` is :meth:`LinkModel.success_probability`
    of the planner's view of the channel (``planner_gain``). The downlink is
    :meth:`LinkModel.downlink_rate_bps`. ``compute_fraction`` is the share of a sample's training
    cycles spent on the device (below 1 for split learning); ``server_flops_per_sample`` the
    edge server's share, run at ``server_flops_per_s`` split equally among the scheduled devices.
    """
    sel = np.asarray(alloc.selected, bool)
    ul_rate = np.where(sel, link.uplink_rate_bps(alloc.bandwidth_hz, alloc.power_w, ch.channel_gain, uplink_bits), 0.0)
    real = link.realise(outage_rng, alloc.bandwidth_hz, alloc.power_w, ch.channel_gain, ul_rate, sel)
    success = np.where(sel, link.success_probability(ch.distance_m, alloc.bandwidth_hz, alloc.power_w,
                                                     link.planner_gain(ch), uplink_bits), 0.0)
    dl_rate = link.downlink_rate_bps(sel, ch.channel_gain)
    cost = round_costs(cycles_per_sample=dev.cycles_per_sample * compute_fraction, num_samples=num_samples,
                       cpu_freq_hz=dev.cpu_freq_hz, kappa=dev.kappa, power_w=alloc.power_w,
                       uplink_bits=uplink_bits, uplink_rate_bps=np.where(sel, ul_rate, 1.0),
                       downlink_bits=downlink_bits, downlink_rate_bps=np.where(sel, dl_rate, 1.0),
                       server_s=server_compute_s(server_flops_per_sample, num_samples, server_flops_per_s, sel),
                       selected=sel)
    return RadioRound(ul_rate, dl_rate, link.downlink_bandwidth_share_hz(sel), success,
                      np.where(sel, real.sinr, 0.0), np.where(sel, real.capacity_bps, 0.0), real.delivered, cost)
