"""An example airtune plugin (docs/extending.md): one of each extension kind, added without
editing airtune. airtune calls :func:`register` once, through the ``airtune.plugins`` entry point
of this package's ``pyproject.toml``, before it first looks a name up in a registry."""

from __future__ import annotations

from dataclasses import replace

import numpy as np


def register() -> None:
    """Register the example components in airtune's registries."""
    from airtune.allocation.baselines import allocate_equal
    from airtune.registry import ALLOCATORS, FADING, PARTITIONERS, STRATEGIES
    from airtune.strategies.fedit import FedIT

    @STRATEGIES.register("example_uniform_fedit")
    class UniformFedIT(FedIT):
        """FedIT with uniform instead of data-size aggregation weights."""

        def aggregate(self, rnd, server, updates, delivered):
            return super().aggregate(rnd, server, [replace(u, num_samples=1) for u in updates], delivered)

    @ALLOCATORS.register("example_half_band")
    def half_band(**kw):
        """Equal bandwidth, but only half of the band is used (a deliberately wasteful baseline)."""
        plan = allocate_equal(**kw)
        return replace(plan, bandwidth_hz=plan.bandwidth_hz / 2)

    @PARTITIONERS.register("example_round_robin")
    def round_robin(labels, num_devices, rng, **unused):
        """Example i goes to device i mod K after a seeded shuffle (IID, equal sizes)."""
        order = rng.permutation(len(labels))
        return [np.sort(order[k::num_devices]) for k in range(num_devices)]

    @FADING.register("example_nakagami2")
    def nakagami2(rng, num_devices):
        """Nakagami-m fading with m = 2: power gain ~ Gamma(2, 1/2), unit mean."""
        return rng.gamma(2.0, 0.5, int(num_devices))
