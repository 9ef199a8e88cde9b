"""Aggregation weights: data-size (FedAvg) or uniform.

Every strategy weights a delivered update by ``ClientUpdate.num_samples``, the device's local
data size, as FedAvg does (McMahan et al., AISTATS 2017, Algorithm 1: ``n_k / n``). Under label
skew a few large near-single-class devices then decide the label balance of a round's aggregate
(docs/design.md "Learning under label skew"); uniform weights (``1 / |delivered|``) are the
usual alternative (e.g. Li et al., "On the Convergence of FedAvg on Non-IID Data", ICLR 2020,
scheme II, with uniform sampling). ``strategy.weighting`` selects one for every strategy: the
runner hands the strategy updates whose ``num_samples`` is the aggregation weight.

Our choice: the weight is applied by rewriting ``num_samples`` of the updates passed to
``aggregate`` (to 1 for uniform), so every strategy's own rule stays as written; the runner's
compute and energy accounting read the samples processed per round, not this field.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from airtune.training.engine import ClientUpdate

Weighting = Literal["data_size", "uniform"]


def weighted(updates: list[ClientUpdate], weighting: Weighting) -> list[ClientUpdate]:
    """The updates with ``num_samples`` set to their aggregation weight (unchanged for data_size)."""
    if weighting == "data_size":
        return updates
    if weighting == "uniform":
        return [replace(u, num_samples=1) for u in updates]
    raise ValueError(f"strategy.weighting = {weighting!r}: unknown; fix: use data_size or uniform")
