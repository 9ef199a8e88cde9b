r"""Channel model: path loss, Rayleigh fading, SNR and Shannon rate (pure numpy).

Everything is vectorised over devices: per-device arguments have shape ``(K,)`` and any
argument may also be a scalar (broadcast). Random functions take an explicit
``numpy.random.Generator``.

Sources: papers.md §1.3 [R] (FDMA Shannon rate), §3.3 [R] (Rayleigh fading), §5 [R]
(3GPP-like path loss ``128.1 + 37.6 log10(d_km)`` dB and other simulator defaults; none of
these is a paper's own equation). The PPP outage model (SINR threshold, success and outage
probability, delivery sampling; papers.md §3.3 [R]) is in :mod:`airtune.wireless.outage` and
re-exported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from airtune.wireless.topology import drop_uniform_disk
from airtune.wireless.units import db_to_linear

__all__ = [
    "ChannelState",
    "FadingModel",
    "init_channel",
    "path_gain",
    "path_gain_at_1m_from_db",
    "path_loss_db",
    "path_loss_exponent_from_slope",
    "rayleigh_fading",
    "shannon_rate_bps",
    "snr",
    "step_channel",
]

FadingModel = str  # a name in the FADING registry: "rayleigh", "none", or a plugin's


# --------------------------------------------------------------------------- path loss


def path_loss_db(
    distance_m: ArrayLike, const_db: float = 128.1, slope_db: float = 37.6
) -> np.ndarray:
    r"""Log-distance path loss in dB (3GPP UMa-like default).

    Parameters
    ----------
    distance_m : float or array_like, shape (K,)
        Device-to-server distance in m, > 0.
    const_db : float, default 128.1
        Path loss at 1 km in dB.
    slope_db : float, default 37.6
        dB per decade of distance (10 x path-loss exponent).

    Returns
    -------
    numpy.ndarray, shape (K,)
        Path loss :math:`PL` in dB.

    Notes
    -----
    .. math:: PL(d) = c_{\mathrm{dB}} + s_{\mathrm{dB}}\log_{10}\!\big(d / 1000\,\mathrm m\big)

    Source: papers.md §5 [R] (simulator default, not from the papers).
    """
    d = np.asarray(distance_m, dtype=float)
    return const_db + slope_db * np.log10(d / 1000.0)


def path_gain(
    distance_m: ArrayLike, const_db: float = 128.1, slope_db: float = 37.6
) -> np.ndarray:
    r"""Linear large-scale power gain of :func:`path_loss_db`.

    Parameters
    ----------
    distance_m : float or array_like, shape (K,)
        Device-to-server distance in m, > 0.
    const_db : float, default 128.1
        Path loss at 1 km in dB.
    slope_db : float, default 37.6
        dB per decade of distance.

    Returns
    -------
    numpy.ndarray, shape (K,)
        Power gain (dimensionless, in (0, 1] for realistic distances).

    Notes
    -----
    .. math:: \beta(d) = 10^{-PL(d)/10}

    Source: papers.md §5 [R].
    """
    return db_to_linear(-path_loss_db(distance_m, const_db, slope_db))


def path_loss_exponent_from_slope(slope_db: float) -> float:
    r"""Path-loss exponent :math:`\alpha` of a log-distance model with slope ``slope_db``.

    Parameters
    ----------
    slope_db : float
        dB per decade of distance (37.6 for the default model).

    Returns
    -------
    float
        :math:`\alpha` (3.76 for the default model).

    Notes
    -----
    .. math:: \alpha = s_{\mathrm{dB}} / 10

    Source: algebra on papers.md §5 [R].
    """
    return float(slope_db) / 10.0


def path_gain_at_1m_from_db(const_db: float = 128.1, slope_db: float = 37.6) -> float:
    r"""Constant :math:`c` such that :func:`path_gain` equals :math:`c\, d_{\mathrm m}^{-\alpha}`.

    Lets the PPP closed form (power-law path loss) use the same channel as
    :func:`path_gain` (log-distance model with the distance in km).

    Parameters
    ----------
    const_db : float, default 128.1
        Path loss at 1 km in dB.
    slope_db : float, default 37.6
        dB per decade of distance.

    Returns
    -------
    float
        :math:`c` (dimensionless): about :math:`10^{-1.53}` for the default model.

    Notes
    -----
    With :math:`\log_{10}(d/1000) = \log_{10} d - 3`,

    .. math::
        10^{-PL(d)/10} = 10^{-(c_{\mathrm{dB}} - 3 s_{\mathrm{dB}})/10}\; d^{-s_{\mathrm{dB}}/10}
        \;\Rightarrow\; c = 10^{-(c_{\mathrm{dB}} - 3 s_{\mathrm{dB}})/10},\quad
        \alpha = s_{\mathrm{dB}}/10.

    Source: algebra on papers.md §5 [R] (our derivation, tested against :func:`path_gain`).
    """
    return float(db_to_linear(-(const_db - 3.0 * slope_db)))


# --------------------------------------------------------------------------- fading / state


def rayleigh_fading(rng: np.random.Generator, num_devices: int) -> np.ndarray:
    r"""Rayleigh small-scale fading power gains, i.i.d. across devices.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    num_devices : int
        Number of devices :math:`K`.

    Returns
    -------
    numpy.ndarray, shape (K,)
        Power gains :math:`|h_k|^2` (dimensionless, mean 1).

    Notes
    -----
    .. math:: |h_k|^2 \sim \mathrm{Exp}(1)

    Source: papers.md §3.3 / §5 [R].
    """
    return rng.exponential(1.0, size=int(num_devices))


def _draw_fading(rng: np.random.Generator, num_devices: int, fading: FadingModel) -> np.ndarray:
    """The round's fading power gains from the registered model ``fading`` (``wireless/fading.py``)."""
    from airtune.registry import FADING

    return np.asarray(FADING.get(fading)(rng, int(num_devices)), dtype=float)


def _frozen(x: ArrayLike) -> np.ndarray:
    arr = np.array(x, dtype=float)  # a copy, so the caller's array stays writable
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class ChannelState:
    r"""Channel of every device in one round (immutable; advance with :func:`step_channel`).

    Attributes
    ----------
    distance_m : numpy.ndarray, shape (K,)
        Device-to-server distance in m (fixed across rounds).
    path_gain : numpy.ndarray, shape (K,)
        Large-scale power gain (dimensionless, fixed across rounds).
    fading : numpy.ndarray, shape (K,)
        Small-scale fading power gain of this round (dimensionless).
    channel_gain : numpy.ndarray, shape (K,)
        Total power gain :math:`h_k = \beta_k |h_k|^2` (derived, not an init argument).
    """

    distance_m: np.ndarray
    path_gain: np.ndarray
    fading: np.ndarray
    channel_gain: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        distance_m, path_gain_, fading = (
            _frozen(self.distance_m), _frozen(self.path_gain), _frozen(self.fading)
        )
        if not distance_m.shape == path_gain_.shape == fading.shape or distance_m.ndim != 1:
            raise ValueError(
                "ChannelState arrays must all have shape (K,): got "
                f"{distance_m.shape}, {path_gain_.shape}, {fading.shape}"
            )
        object.__setattr__(self, "distance_m", distance_m)
        object.__setattr__(self, "path_gain", path_gain_)
        object.__setattr__(self, "fading", fading)
        object.__setattr__(self, "channel_gain", _frozen(path_gain_ * fading))

    @property
    def num_devices(self) -> int:
        """Number of devices :math:`K`."""
        return int(self.distance_m.shape[0])


def init_channel(
    rng: np.random.Generator,
    num_devices: int,
    radius_m: float = 500.0,
    min_distance_m: float = 0.0,
    const_db: float = 128.1,
    slope_db: float = 37.6,
    fading: FadingModel = "rayleigh",
) -> ChannelState:
    r"""Drop devices uniformly in the cell and draw the first round's fading.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness (placement first, then fading).
    num_devices : int
        Number of devices :math:`K`.
    radius_m : float, default 500.0
        Cell radius in m.
    min_distance_m : float, default 0.0
        Exclusion radius around the server in m.
    const_db, slope_db : float
        Path-loss model of :func:`path_loss_db`.
    fading : {"rayleigh", "none"}
        Small-scale fading model ("none" sets every fading gain to 1).

    Returns
    -------
    ChannelState
        Arrays of shape (K,).

    Notes
    -----
    .. math:: h_k = 10^{-PL(d_k)/10}\, |h_k|^2

    Source: papers.md §1.3 / §5 [R].
    """
    distance_m = drop_uniform_disk(rng, num_devices, radius_m, min_distance_m)  # (K,)
    return ChannelState(
        distance_m=distance_m,
        path_gain=path_gain(distance_m, const_db, slope_db),
        fading=_draw_fading(rng, num_devices, fading),
    )


def step_channel(
    state: ChannelState, rng: np.random.Generator, fading: FadingModel = "rayleigh"
) -> ChannelState:
    r"""Advance the channel by one round: positions fixed, fading redrawn i.i.d.

    Parameters
    ----------
    state : ChannelState
        Channel of the previous round (not modified).
    rng : numpy.random.Generator
        Source of randomness.
    fading : {"rayleigh", "none"}
        Small-scale fading model.

    Returns
    -------
    ChannelState
        New state with the same ``distance_m`` and ``path_gain`` and fresh ``fading``.

    Notes
    -----
    .. math:: |h_k(t+1)|^2 \sim \mathrm{Exp}(1)\ \text{i.i.d. across } k \text{ and } t

    Source: papers.md §1.3 [R] (i.i.d. block fading across rounds).
    """
    return ChannelState(
        distance_m=state.distance_m,
        path_gain=state.path_gain,
        fading=_draw_fading(rng, state.num_devices, fading),
    )


# --------------------------------------------------------------------------- SNR and rate


def snr(
    power_w: ArrayLike,
    channel_gain: ArrayLike,
    noise_psd_w_per_hz: ArrayLike,
    bandwidth_hz: ArrayLike,
    interference_w: ArrayLike = 0.0,
) -> np.ndarray:
    r"""Received signal-to-interference-plus-noise ratio (linear).

    Parameters
    ----------
    power_w : float or array_like, shape (K,)
        Transmit power in W, >= 0.
    channel_gain : float or array_like, shape (K,)
        Total power gain (path gain x fading), dimensionless.
    noise_psd_w_per_hz : float or array_like, shape (K,)
        Noise power spectral density :math:`N_0` in W/Hz.
    bandwidth_hz : float or array_like, shape (K,)
        Bandwidth :math:`b_k` in Hz, >= 0.
    interference_w : float or array_like, shape (K,), default 0.0
        Interference power at the receiver in W.

    Returns
    -------
    numpy.ndarray, shape (K,)
        SINR (dimensionless). It is 0 where the received power is 0, and ``inf`` where the
        received power is positive but interference plus noise is 0.

    Notes
    -----
    .. math:: \gamma_k = \frac{p_k h_k}{I_k + N_0 b_k}

    Source: papers.md §1.3 / §3.3 [R].
    """
    signal_w = np.asarray(power_w, dtype=float) * np.asarray(channel_gain, dtype=float)
    denom_w = np.asarray(interference_w, dtype=float) + np.asarray(
        noise_psd_w_per_hz, dtype=float
    ) * np.asarray(bandwidth_hz, dtype=float)
    signal_w, denom_w = np.broadcast_arrays(signal_w, denom_w)
    out = np.where(signal_w > 0, np.inf, 0.0)
    np.divide(signal_w, denom_w, out=out, where=denom_w > 0)
    return out


def shannon_rate_bps(
    bandwidth_hz: ArrayLike,
    power_w: ArrayLike,
    channel_gain: ArrayLike,
    noise_psd_w_per_hz: ArrayLike,
    interference_w: ArrayLike = 0.0,
) -> np.ndarray:
    r"""Shannon capacity of an FDMA sub-band.

    Parameters
    ----------
    bandwidth_hz : float or array_like, shape (K,)
        Bandwidth :math:`b_k` in Hz, >= 0.
    power_w : float or array_like, shape (K,)
        Transmit power :math:`p_k` in W, >= 0.
    channel_gain : float or array_like, shape (K,)
        Total power gain :math:`h_k`, dimensionless.
    noise_psd_w_per_hz : float or array_like, shape (K,)
        Noise power spectral density :math:`N_0` in W/Hz, > 0.
    interference_w : float or array_like, shape (K,), default 0.0
        Interference power :math:`I_k` in W.

    Returns
    -------
    numpy.ndarray, shape (K,)
        Rate in bit/s; exactly 0 where ``bandwidth_hz == 0`` (no warning, no nan).

    Notes
    -----
    .. math:: r_k = b_k \log_2\!\Big(1 + \frac{p_k h_k}{I_k + N_0 b_k}\Big)

    Source: papers.md §1.3 [R] (with :math:`I_k` from §3.3 [R]).
    """
    b = np.asarray(bandwidth_hz, dtype=float)
    gamma = snr(power_w, channel_gain, noise_psd_w_per_hz, b, interference_w)
    b, gamma = np.broadcast_arrays(b, gamma)
    out = np.zeros(b.shape)
    np.multiply(b, np.log1p(gamma) / math.log(2.0), out=out, where=b > 0)
    return out
