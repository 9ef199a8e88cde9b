r"""Unit conversions: the only place where dB, dBm, GHz and MHz become SI quantities.

Every function is elementwise and accepts a float or an array of any shape; it returns a
``numpy.ndarray`` (a 0-d array for a scalar input, which behaves like a float).

Source: standard definitions, not from any paper.
"""

from __future__ import annotations

from typing import cast

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "db_to_linear",
    "linear_to_db",
    "dbm_to_w",
    "w_to_dbm",
    "dbm_per_hz_to_w_per_hz",
    "w_per_hz_to_dbm_per_hz",
    "ghz_to_hz",
    "hz_to_ghz",
    "mhz_to_hz",
    "hz_to_mhz",
    "km_to_m",
]


def db_to_linear(value_db: ArrayLike) -> np.ndarray:
    r"""Convert a power ratio from decibels to a linear ratio.

    Parameters
    ----------
    value_db : float or array_like, any shape
        Power ratio in dB.

    Returns
    -------
    numpy.ndarray, same shape
        Linear power ratio (dimensionless).

    Notes
    -----
    .. math:: x = 10^{x_{\mathrm{dB}}/10}
    """
    return np.power(10.0, np.asarray(value_db, dtype=float) / 10.0)


def linear_to_db(value_linear: ArrayLike) -> np.ndarray:
    r"""Convert a linear power ratio to decibels.

    Parameters
    ----------
    value_linear : float or array_like, any shape
        Linear power ratio, > 0 (0 gives ``-inf``).

    Returns
    -------
    numpy.ndarray, same shape
        Power ratio in dB.

    Notes
    -----
    .. math:: x_{\mathrm{dB}} = 10\log_{10} x
    """
    with np.errstate(divide="ignore"):
        return cast(np.ndarray, 10.0 * np.log10(np.asarray(value_linear, dtype=float)))


def dbm_to_w(power_dbm: ArrayLike) -> np.ndarray:
    r"""Convert a power from dBm to watts.

    Parameters
    ----------
    power_dbm : float or array_like, any shape
        Power in dBm (dB relative to 1 mW).

    Returns
    -------
    numpy.ndarray, same shape
        Power in W.

    Notes
    -----
    .. math:: p_{\mathrm W} = 10^{(p_{\mathrm{dBm}} - 30)/10}
    """
    return db_to_linear(np.asarray(power_dbm, dtype=float) - 30.0)


def w_to_dbm(power_w: ArrayLike) -> np.ndarray:
    r"""Convert a power from watts to dBm.

    Parameters
    ----------
    power_w : float or array_like, any shape
        Power in W, > 0 (0 gives ``-inf``).

    Returns
    -------
    numpy.ndarray, same shape
        Power in dBm.

    Notes
    -----
    .. math:: p_{\mathrm{dBm}} = 10\log_{10} p_{\mathrm W} + 30
    """
    return linear_to_db(power_w) + 30.0


def dbm_per_hz_to_w_per_hz(psd_dbm_per_hz: ArrayLike) -> np.ndarray:
    r"""Convert a power spectral density from dBm/Hz to W/Hz (e.g. noise ``-174`` dBm/Hz).

    Parameters
    ----------
    psd_dbm_per_hz : float or array_like, any shape
        Power spectral density in dBm/Hz.

    Returns
    -------
    numpy.ndarray, same shape
        Power spectral density in W/Hz.

    Notes
    -----
    .. math:: N_{0,\mathrm{W/Hz}} = 10^{(N_{0,\mathrm{dBm/Hz}} - 30)/10}
    """
    return dbm_to_w(psd_dbm_per_hz)


def w_per_hz_to_dbm_per_hz(psd_w_per_hz: ArrayLike) -> np.ndarray:
    r"""Convert a power spectral density from W/Hz to dBm/Hz.

    Parameters
    ----------
    psd_w_per_hz : float or array_like, any shape
        Power spectral density in W/Hz, > 0.

    Returns
    -------
    numpy.ndarray, same shape
        Power spectral density in dBm/Hz.

    Notes
    -----
    .. math:: N_{0,\mathrm{dBm/Hz}} = 10\log_{10} N_{0,\mathrm{W/Hz}} + 30
    """
    return w_to_dbm(psd_w_per_hz)


def ghz_to_hz(value_ghz: ArrayLike) -> np.ndarray:
    r"""Convert gigahertz to hertz.

    Parameters
    ----------
    value_ghz : float or array_like, any shape
        Frequency in GHz.

    Returns
    -------
    numpy.ndarray, same shape
        Frequency in Hz.

    Notes
    -----
    .. math:: f_{\mathrm{Hz}} = 10^9 f_{\mathrm{GHz}}
    """
    return np.asarray(value_ghz, dtype=float) * 1e9


def hz_to_ghz(value_hz: ArrayLike) -> np.ndarray:
    r"""Convert hertz to gigahertz.

    Parameters
    ----------
    value_hz : float or array_like, any shape
        Frequency in Hz.

    Returns
    -------
    numpy.ndarray, same shape
        Frequency in GHz.

    Notes
    -----
    .. math:: f_{\mathrm{GHz}} = 10^{-9} f_{\mathrm{Hz}}
    """
    return np.asarray(value_hz, dtype=float) / 1e9


def mhz_to_hz(value_mhz: ArrayLike) -> np.ndarray:
    r"""Convert megahertz to hertz (e.g. a total bandwidth of 10 MHz).

    Parameters
    ----------
    value_mhz : float or array_like, any shape
        Frequency or bandwidth in MHz.

    Returns
    -------
    numpy.ndarray, same shape
        Frequency or bandwidth in Hz.

    Notes
    -----
    .. math:: b_{\mathrm{Hz}} = 10^6 b_{\mathrm{MHz}}
    """
    return np.asarray(value_mhz, dtype=float) * 1e6


def hz_to_mhz(value_hz: ArrayLike) -> np.ndarray:
    r"""Convert hertz to megahertz.

    Parameters
    ----------
    value_hz : float or array_like, any shape
        Frequency or bandwidth in Hz.

    Returns
    -------
    numpy.ndarray, same shape
        Frequency or bandwidth in MHz.

    Notes
    -----
    .. math:: b_{\mathrm{MHz}} = 10^{-6} b_{\mathrm{Hz}}
    """
    return np.asarray(value_hz, dtype=float) / 1e6


def km_to_m(value_km: ArrayLike) -> np.ndarray:
    r"""Convert kilometres to metres.

    Parameters
    ----------
    value_km : float or array_like, any shape
        Distance in km.

    Returns
    -------
    numpy.ndarray, same shape
        Distance in m.

    Notes
    -----
    .. math:: d_{\mathrm m} = 10^3 d_{\mathrm{km}}
    """
    return np.asarray(value_km, dtype=float) * 1e3
