"""Small-scale fading models (``FADING`` registry, ``wireless.fading``): ``f(rng, num_devices)``
returns the round's (K,) power gains with unit mean. The registration point of fading models;
plugins add others (docs/extending.md)."""

from __future__ import annotations

import numpy as np

from airtune.registry import FADING
from airtune.wireless.channel import rayleigh_fading

FADING.register("rayleigh")(rayleigh_fading)


@FADING.register("none")
def no_fading(rng: np.random.Generator, num_devices: int) -> np.ndarray:
    """No small-scale fading: every power gain is 1 (``rng`` is not used)."""
    return np.ones(int(num_devices))
