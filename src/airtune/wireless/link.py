r"""The radio link, built once from the config in linear SI units and shared by the runner and
every planner: what a planner sees, how the rate is chosen, how delivery is decided.

The rate that is charged is the rate that is decoded: every mode charges an upload the rate
:math:`R_k` it is sent at, and the upload is delivered iff that rate is decodable at the
realised SINR, :math:`R_k \le b_k\log_2(1+\mathrm{SINR}_k)`, where
:math:`\mathrm{SINR}_k = p_kh_k/(I_k+b_kN_0)` with the round's realised channel gain
:math:`h_k` and a realised aggregate PPP interference :math:`I_k`
(:mod:`airtune.wireless.interference`, exact for Rayleigh-faded interferers on the whole
plane). The success probability a planner optimises is the probability of exactly that event
given what the planner sees.

Modes (``wireless.link``)
-------------------------
``error_free`` (papers 1 and 2; papers.md §1.3 and §2.3 default)
    No interference, no packet loss: :math:`R_k = b_k\log_2(1+p_kh_k/(b_kN_0))` at the
    realised SNR (the server has the CSI, [S2] of paper 2); every upload is delivered.
``fixed_rate_outage`` (paper 3: seed text eq. (2), the success probability at an SINR
threshold, and eq. (13), the minimum transmission delay of a module)
    :math:`R_k = b_k\log_2(1+\theta)`; delivered iff :math:`\mathrm{SINR}_k \ge \theta`. With an
    upload slot :math:`T` (``wireless.upload_slot_s``, paper 3's transmission slot) the payload
    sets the rate instead: :math:`R_k = S_k/T` and
    :math:`\theta_k = 2^{S_k/(b_kT)}-1` (:meth:`LinkModel.sinr_threshold_for`), so a smaller
    LoRA module needs a lower SINR over the same slot. With
    statistical CSI (the default: the planner sees distances only) and Rayleigh fading the
    success probability is the closed form of
    :func:`~airtune.wireless.outage.ppp_success_probability`; with instantaneous CSI (or no
    fading) it is the exact conditional probability given the realised :math:`h_k`,
    :math:`\Pr[I_k \le p_kh_k/\theta - b_kN_0]`.
``adaptive_outage`` (link adaptation; our choice, for users who want a realistic default)
    The device knows its realised :math:`h_k` but not the interference, and backs off its rate
    so that interference causes outage with probability :math:`\varepsilon`:
    :math:`R_k = b_k\log_2(1+p_kh_k/(I_\varepsilon+b_kN_0))` with :math:`I_\varepsilon` the
    :math:`1-\varepsilon` quantile of :math:`I`; delivered iff :math:`I_k \le I_\varepsilon`,
    probability exactly :math:`1-\varepsilon` whatever the fading.

The downlink (:meth:`LinkModel.downlink_rate_bps`) is one model for runner and planners: the
base station sends at ``server_power_dbm`` on an equal share of ``downlink_bandwidth_hz`` per
scheduled device, error-free at the Shannon rate of the realised channel (our choice: papers.md
§1.3 and §3.3 leave the downlink open; a 43 dBm base station rarely limits the round).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

import numpy as np
from numpy.typing import ArrayLike

from airtune.wireless.channel import (
    ChannelState,
    path_gain_at_1m_from_db,
    path_loss_exponent_from_slope,
    shannon_rate_bps,
    snr,
)
from airtune.wireless.interference import (
    interference_scale_w,
    positive_stable_cdf,
    positive_stable_quantile,
    sample_interference_w,
    stable_index,
)
from airtune.wireless.outage import ppp_success_probability, sinr_threshold_for_rate
from airtune.wireless.units import db_to_linear, dbm_to_w

if TYPE_CHECKING:
    from airtune.config.schema import WirelessConfig

__all__ = ["CSI_DEFAULTS", "CsiMode", "LINK_MODES", "LinkModel", "LinkMode", "LinkRealisation", "link_from_config"]

LinkMode = Literal["error_free", "fixed_rate_outage", "adaptive_outage"]
CsiMode = Literal["instantaneous", "statistical"]
LINK_MODES: tuple[str, ...] = ("error_free", "fixed_rate_outage", "adaptive_outage")
CSI_DEFAULTS: dict[str, CsiMode] = {"error_free": "instantaneous", "fixed_rate_outage": "statistical",
                                    "adaptive_outage": "instantaneous"}
DECODE_RTOL = 1e-9
"""Relative tolerance of the decodability test, for rates computed from the same SINR."""


@dataclass(frozen=True)
class LinkRealisation:
    """Per-device (K,) outcome of one round's uplink transmissions."""

    interference_w: np.ndarray   # realised aggregate interference (0 in error_free)
    sinr: np.ndarray             # realised SINR of the upload
    capacity_bps: np.ndarray     # b log2(1 + SINR): the largest decodable rate
    delivered: np.ndarray        # bool: scheduled and rate_bps <= capacity_bps


@dataclass(frozen=True)
class LinkModel:
    """Linear-SI link constants and the three decisions of the module docstring."""

    mode: LinkMode
    csi: CsiMode
    noise_psd_w_per_hz: float
    uplink_bandwidth_hz: float
    downlink_bandwidth_hz: float
    server_power_w: float
    sinr_threshold: float            # theta, linear (fixed_rate_outage)
    target_outage: float             # epsilon (adaptive_outage)
    path_loss_exponent: float
    path_gain_at_1m: float
    interferer_density_per_m2: float
    interferer_power_w: float
    fading: str                      # small-scale fading model of the devices' links (FADING registry)
    interference_scale_w: float = 0.0
    interference_margin_w: float = 0.0
    upload_slot_s: float | None = None  # T (fixed_rate_outage): rate = payload / T; None: rate at sinr_threshold

    def __post_init__(self) -> None:
        if self.mode not in LINK_MODES:
            raise ValueError(f"link mode {self.mode!r} must be one of {LINK_MODES}")
        if self.csi not in ("instantaneous", "statistical"):
            raise ValueError(f"csi {self.csi!r} must be 'instantaneous' or 'statistical'")
        scale = 0.0 if self.mode == "error_free" else interference_scale_w(
            self.interferer_density_per_m2, self.interferer_power_w, self.path_gain_at_1m, self.path_loss_exponent)
        object.__setattr__(self, "interference_scale_w", scale)
        margin = 0.0
        if self.mode == "adaptive_outage" and scale > 0:
            margin = scale * positive_stable_quantile(1.0 - self.target_outage, self.delta)
        object.__setattr__(self, "interference_margin_w", margin)

    # ------------------------------------------------------------------------ what planners use
    @property
    def rayleigh(self) -> bool:
        """Rayleigh fading on the devices' links (the PPP closed form assumes it)."""
        return self.fading == "rayleigh"

    @property
    def delta(self) -> float:
        return stable_index(self.path_loss_exponent)

    @property
    def rate_model(self) -> Literal["fixed", "shannon"]:
        """How the allocation solvers model the rate: ``"fixed"`` or ``"shannon"`` (rate_model.py)."""
        return "fixed" if self.mode == "fixed_rate_outage" else "shannon"

    @property
    def rate_interference_w(self) -> float:
        """Interference term of the Shannon rate model: the back-off margin (adaptive), else 0."""
        return self.interference_margin_w

    def mean_gain(self, distance_m: ArrayLike) -> np.ndarray:
        r"""Mean channel power gain :math:`c\,d^{-\alpha}` (the path gain; fading has unit mean)."""
        return self.path_gain_at_1m * np.asarray(distance_m, float) ** (-self.path_loss_exponent)

    def require(self, component: str, modes: tuple[str, ...] = ("error_free",)) -> None:
        """Raise a one-line ConfigError when ``component`` cannot model this link mode."""
        if self.mode not in modes:
            from airtune.errors import ConfigError
            raise ConfigError(f"{component} models the uplink as {' or '.join(modes)}, but wireless.link = "
                              f"'{self.mode}'; fix: set wireless.link={modes[0]} or choose another allocation.name")

    def planner_gain(self, ch: ChannelState) -> np.ndarray:
        """Channel gain (K,) a planner sees: realised (instantaneous CSI) or its mean, the path gain."""
        return np.asarray(ch.channel_gain if self.csi == "instantaneous" else ch.path_gain, float)

    @property
    def payload_sets_rate(self) -> bool:
        """Whether the charged rate is payload / upload slot (fixed_rate_outage with ``upload_slot_s``)."""
        return self.mode == "fixed_rate_outage" and self.upload_slot_s is not None

    def sinr_threshold_for(self, bandwidth_hz: ArrayLike, payload_bits: ArrayLike | None = None) -> np.ndarray:
        r"""SINR threshold (K,) of the fixed-rate link: :math:`2^{S_k/(b_kT)}-1` with an upload slot
        (``inf`` at 0 Hz), else the configured :math:`\theta`."""
        b = np.asarray(bandwidth_hz, float)
        if not self.payload_sets_rate:
            return np.full(b.shape, self.sinr_threshold)
        if payload_bits is None:
            raise ValueError("LinkModel with upload_slot_s: the rate is payload / slot, pass payload_bits")
        assert self.upload_slot_s is not None
        return sinr_threshold_for_rate(np.asarray(payload_bits, float) / self.upload_slot_s, b)

    def uplink_rate_bps(self, bandwidth_hz: ArrayLike, power_w: ArrayLike, channel_gain: ArrayLike,
                        payload_bits: ArrayLike | None = None) -> np.ndarray:
        """The rate an upload is sent at and charged for, shape (K,) (``payload_bits``: needed with an upload slot)."""
        b = np.asarray(bandwidth_hz, float)
        if self.payload_sets_rate:
            assert self.upload_slot_s is not None
            if payload_bits is None:
                raise ValueError("LinkModel with upload_slot_s: the rate is payload / slot, pass payload_bits")
            shape = np.broadcast_shapes(b.shape, np.shape(power_w), np.shape(channel_gain), np.shape(payload_bits))
            rate = np.broadcast_to(np.asarray(payload_bits, float) / self.upload_slot_s, shape)
            return np.where(np.broadcast_to(b, shape) > 0, rate, 0.0)
        if self.mode == "fixed_rate_outage":
            return cast(np.ndarray, np.broadcast_to(b * np.log2(1.0 + self.sinr_threshold),
                                                    np.broadcast_shapes(b.shape, np.shape(power_w),
                                                                        np.shape(channel_gain))).copy())
        return shannon_rate_bps(b, power_w, channel_gain, self.noise_psd_w_per_hz, self.rate_interference_w)

    def success_probability(self, distance_m: ArrayLike, bandwidth_hz: ArrayLike, power_w: ArrayLike,
                            channel_gain: ArrayLike, payload_bits: ArrayLike | None = None) -> np.ndarray:
        """Probability (K,) of the delivery event given what the planner sees (module docstring).

        ``channel_gain`` is what :meth:`planner_gain` returned; with statistical CSI and Rayleigh
        fading it is not used (the closed form averages over the fading). ``payload_bits``: needed
        with an upload slot (it sets the threshold).
        """
        d, b, p, h = np.broadcast_arrays(*(np.asarray(x, float) for x in (distance_m, bandwidth_hz, power_w,
                                                                          channel_gain)))
        theta = self.sinr_threshold_for(b, payload_bits) if self.mode == "fixed_rate_outage" else self.sinr_threshold
        on = (p > 0) & (b > 0)
        if self.mode == "error_free":
            return on.astype(float)
        if self.mode == "adaptive_outage":
            return np.where(on, 1.0 - (self.target_outage if self.interference_scale_w > 0 else 0.0), 0.0)
        if self.csi == "statistical" and self.rayleigh:
            return ppp_success_probability(d, np.maximum(p, 1e-300), b, self.noise_psd_w_per_hz, theta,
                                           self.path_loss_exponent, self.path_gain_at_1m,
                                           self.interferer_density_per_m2, self.interferer_power_w) * on
        with np.errstate(divide="ignore"):
            slack_w = p * h / theta - b * self.noise_psd_w_per_hz   # interference it tolerates
        if self.interference_scale_w <= 0:
            return cast(np.ndarray, (on & (slack_w >= 0)).astype(float))
        return np.where(on, positive_stable_cdf(slack_w / self.interference_scale_w, self.delta), 0.0)

    # ------------------------------------------------------------------------ what the runner uses
    def realise(self, rng: np.random.Generator, bandwidth_hz: ArrayLike, power_w: ArrayLike,
                channel_gain: ArrayLike, rate_bps: ArrayLike, selected: ArrayLike) -> LinkRealisation:
        """Draw the round's interference (one value per device, always K draws) and decide delivery.

        ``channel_gain`` is the realised gain (not the planner's view); ``rate_bps`` the charged rate.
        """
        b, p, h, r = np.broadcast_arrays(*(np.asarray(x, float) for x in (bandwidth_hz, power_w, channel_gain,
                                                                          rate_bps)))
        sel = np.asarray(selected, bool)
        if self.mode == "error_free" or self.interference_scale_w <= 0:
            interference = np.zeros(b.shape)
        else:
            interference = sample_interference_w(rng, self.interference_scale_w, self.delta, b.shape)
        sinr = snr(p, h, self.noise_psd_w_per_hz, b, interference)
        capacity = shannon_rate_bps(b, p, h, self.noise_psd_w_per_hz, interference)
        delivered = sel & (r > 0) & (r <= capacity * (1.0 + DECODE_RTOL))
        return LinkRealisation(interference, sinr, capacity, delivered)

    def downlink_bandwidth_share_hz(self, selected: ArrayLike) -> np.ndarray:
        """Downlink band per scheduled device (K,): an equal share among the scheduled."""
        sel = np.asarray(selected, bool)
        return np.where(sel, self.downlink_bandwidth_hz / max(int(sel.sum()), 1), 0.0)

    def downlink_rate_bps(self, selected: ArrayLike, channel_gain: ArrayLike) -> np.ndarray:
        """Downlink rate (K,) of every scheduled device (0 elsewhere), error-free Shannon."""
        sel = np.asarray(selected, bool)
        return np.where(sel, self.downlink_rate_if_bps(int(sel.sum()), channel_gain), 0.0)

    def downlink_rate_if_bps(self, num_scheduled: int, channel_gain: ArrayLike) -> np.ndarray:
        """Downlink rate (K,) each device would get if ``num_scheduled`` devices were scheduled."""
        share_hz = self.downlink_bandwidth_hz / max(int(num_scheduled), 1)
        return shannon_rate_bps(share_hz, self.server_power_w, channel_gain, self.noise_psd_w_per_hz)


def link_from_config(w: WirelessConfig) -> LinkModel:
    """The link of a ``wireless`` config section (dB and dBm converted here, and only here)."""
    csi = w.csi if w.csi is not None else CSI_DEFAULTS[w.link]
    return LinkModel(
        mode=w.link, csi=csi, noise_psd_w_per_hz=float(dbm_to_w(w.noise_psd_dbm_per_hz)),
        uplink_bandwidth_hz=float(w.uplink_bandwidth_hz), downlink_bandwidth_hz=float(w.downlink_bandwidth_hz),
        server_power_w=float(dbm_to_w(w.server_power_dbm)), sinr_threshold=float(db_to_linear(w.sinr_threshold_db)),
        target_outage=float(w.target_outage), path_loss_exponent=float(path_loss_exponent_from_slope(w.path_loss_slope_db)),
        path_gain_at_1m=float(path_gain_at_1m_from_db(w.path_loss_const_db, w.path_loss_slope_db)),
        interferer_density_per_m2=float(w.interferer_density_per_m2),
        interferer_power_w=float(dbm_to_w(w.interferer_power_dbm)), fading=w.fading,
        upload_slot_s=None if w.upload_slot_s is None else float(w.upload_slot_s))
