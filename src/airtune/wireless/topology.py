r"""Device placement in the cell (seeded, pure).

Source: papers.md §5 [R] (simulator default: UEs uniform in a disk of radius 500 m around the
server / gNB); not from any paper.
"""

from __future__ import annotations

import numpy as np

__all__ = ["drop_uniform_disk"]


def drop_uniform_disk(
    rng: np.random.Generator,
    num_devices: int,
    radius_m: float,
    min_distance_m: float = 0.0,
) -> np.ndarray:
    r"""Distances to the cell centre of devices dropped uniformly (by area) in an annulus.

    The server sits at the centre. A point uniform in the annulus
    :math:`\{x: d_{\min} \le \|x\| \le R\}` has a distance whose CDF is
    :math:`(r^2 - d_{\min}^2)/(R^2 - d_{\min}^2)`, so it is drawn by inversion.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness (one draw of ``num_devices`` uniforms).
    num_devices : int
        Number of devices :math:`K \ge 0`.
    radius_m : float
        Cell radius :math:`R` in m, > 0.
    min_distance_m : float, default 0.0
        Exclusion radius :math:`d_{\min}` around the server in m, in ``[0, radius_m]``
        (keeps path loss finite; 10-35 m is usual).

    Returns
    -------
    distance_m : numpy.ndarray, shape (K,)
        Device-to-server distances in m, in ``[min_distance_m, radius_m]``.

    Raises
    ------
    ValueError
        If ``num_devices < 0``, ``radius_m <= 0`` or ``min_distance_m`` is outside
        ``[0, radius_m]``.

    Notes
    -----
    .. math:: d_k = \sqrt{U_k}, \qquad U_k \sim \mathcal U\big[d_{\min}^2,\ R^2\big]

    Source: papers.md §5 [R] (uniform-in-disk placement).
    """
    if num_devices < 0:
        raise ValueError(f"num_devices={num_devices} must be >= 0")
    if not radius_m > 0:
        raise ValueError(f"radius_m={radius_m} must be > 0")
    if not 0.0 <= min_distance_m <= radius_m:
        raise ValueError(
            f"min_distance_m={min_distance_m} must lie in [0, radius_m={radius_m}]"
        )
    u = rng.uniform(min_distance_m**2, radius_m**2, size=int(num_devices))  # (K,)
    return np.sqrt(u)
