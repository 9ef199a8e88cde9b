"""FedIT / vanilla FedLoRA [zhang2024fedit]: A and B averaged separately, weighted by data size.

papers.md §4.1 [K]. The implied global update ``B̄ Ā`` differs from the average of the device
products by the weighted cross-covariance of the factors (papers.md §2.4 [R], an exact identity);
its Frobenius norm, summed in quadrature over adapted layers, is logged every round as
``cross_cov_fro``.
"""

from __future__ import annotations

import math
from typing import Any

from airtune.lora.adapters import lora_pairs
from airtune.lora.ops import cross_covariance
from airtune.registry import STRATEGIES
from airtune.strategies.aggregate import fedavg
from airtune.strategies.base import ServerState, Strategy, delivered_updates
from airtune.training.engine import ClientUpdate


def cross_cov_norm(states: list[dict], weights: list[float]) -> float:
    """sqrt(sum over layers of ||sum_k p_k (B_k - B̄)(A_k - Ā)||_F^2) of the raw factors."""
    if len(states) < 2:
        return 0.0
    total = 0.0
    for a_key, b_key in lora_pairs(states[0]).values():
        cov = cross_covariance([s[a_key] for s in states], [s[b_key] for s in states], weights)
        total += float(cov.pow(2).sum())
    return math.sqrt(total)


@STRATEGIES.register("fedit")
class FedIT(Strategy):
    """Separate data-size-weighted averaging of the LoRA factors and the task head."""

    name = "fedit"
    bits_known_before_training = True

    def aggregate(self, rnd: int, server: ServerState, updates: list[ClientUpdate],
                  delivered: set[int]) -> tuple[ServerState, dict[str, Any]]:
        ok = delivered_updates(updates, delivered)
        if not ok:
            return server, {"aggregated": 0, "cross_cov_fro": None}
        states = [u.state for u in ok]
        weights = [float(u.num_samples) for u in ok]
        new = ServerState(fedavg(states, weights), dict(server.extra))
        return new, {"aggregated": len(ok), "cross_cov_fro": cross_cov_norm(states, weights)}
