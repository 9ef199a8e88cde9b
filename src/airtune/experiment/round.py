"""One round's radio and cost bookkeeping: who delivered, how long it took, what it cost.

Pure given its inputs (NumPy only): the runner calls it between training and aggregation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from airtune.allocation.result import Allocation
from airtune.config import Config
from airtune.wireless.channel import (
    ChannelState, path_gain_at_1m_from_db, path_loss_exponent_from_slope, shannon_rate_bps,
)
from airtune.wireless.cost import RoundCost, round_costs
from airtune.wireless.devices import DeviceProfiles
from airtune.wireless.outage import ppp_success_probability, sample_delivery
from airtune.wireless.units import db_to_linear, dbm_to_w


@dataclass(frozen=True)
class RadioRound:
    """Per-device (K,) radio outcome of one round."""

    uplink_rate_bps: np.ndarray
    downlink_rate_bps: np.ndarray
    downlink_bandwidth_hz: np.ndarray
    success_prob: np.ndarray
    delivered: np.ndarray        # bool (K,): scheduled and the upload survived the channel
    cost: RoundCost


def radio_round(cfg: Config, ch: ChannelState, dev: DeviceProfiles, alloc: Allocation,
                uplink_bits: np.ndarray, downlink_bits: np.ndarray, num_samples: np.ndarray,
                outage_rng: np.random.Generator, compute_fraction: float = 1.0) -> RadioRound:
    """Rates, success probabilities, sampled delivery, latency and energy of every device.

    The uplink uses the allocated bandwidth and power (Shannon rate, papers.md §1.3 [R]); the
    downlink splits ``downlink_bandwidth_hz`` equally among scheduled devices at the server's
    power. ``compute_fraction`` is the share of a sample's training cycles spent on the device
    (below 1 for split learning, where the encoder runs on the server). With ``wireless.outage = ppp`` an upload is delivered with the closed-form success
    probability of papers.md §3.3 [R] at the SINR threshold ``sinr_threshold_db``.
    """
    w = cfg.wireless
    sel = alloc.selected
    n0 = dbm_to_w(w.noise_psd_dbm_per_hz)
    ul_rate = np.where(sel, shannon_rate_bps(alloc.bandwidth_hz, alloc.power_w, ch.channel_gain, n0), 0.0)
    dl_bw = np.where(sel, w.downlink_bandwidth_hz / max(int(sel.sum()), 1), 0.0)
    dl_rate = np.where(sel, shannon_rate_bps(dl_bw, dbm_to_w(w.server_power_dbm), ch.channel_gain, n0), 0.0)
    if w.outage == "ppp":
        success = ppp_success_probability(
            ch.distance_m, np.maximum(alloc.power_w, 1e-30), alloc.bandwidth_hz, n0,
            db_to_linear(w.sinr_threshold_db), path_loss_exponent_from_slope(w.path_loss_slope_db),
            path_gain_at_1m_from_db(w.path_loss_const_db, w.path_loss_slope_db),
            w.interferer_density_per_m2, dbm_to_w(w.interferer_power_dbm))
        success = np.where(sel, success, 0.0)
        delivered = sample_delivery(outage_rng, success) & sel
    else:
        success = sel.astype(float)
        delivered = sel.copy()
    cost = round_costs(cycles_per_sample=dev.cycles_per_sample * compute_fraction, num_samples=num_samples,
                       cpu_freq_hz=dev.cpu_freq_hz, kappa=dev.kappa, power_w=alloc.power_w,
                       uplink_bits=uplink_bits, uplink_rate_bps=np.where(sel, ul_rate, 1.0),
                       downlink_bits=downlink_bits, downlink_rate_bps=np.where(sel, dl_rate, 1.0),
                       selected=sel)
    return RadioRound(ul_rate, dl_rate, dl_bw, success, delivered, cost)
