"""Full fine-tuning baseline: FedAvg of every weight of the model [mcmahan2017fedavg].

No LoRA: every parameter is trainable, sent up and down each round (papers.md §3.6
"full-parameter FedLoRA", the FedAvg reading).
"""

from __future__ import annotations

from typing import Any

from airtune.registry import STRATEGIES
from airtune.strategies.aggregate import fedavg
from airtune.strategies.base import ServerState, Strategy, delivered_updates
from airtune.training.engine import ClientUpdate


@STRATEGIES.register("full_ft")
class FullFineTuning(Strategy):
    """FedAvg over all model weights, data-size weighted."""

    name = "full_ft"
    bits_known_before_training = True
    uses_lora = False
    uses_lora_rank = False   # no adapters

    def aggregate(self, rnd: int, server: ServerState, updates: list[ClientUpdate],
                  delivered: set[int]) -> tuple[ServerState, dict[str, Any]]:
        ok = delivered_updates(updates, delivered)
        if not ok:
            return server, {"aggregated": 0}
        new = fedavg([u.state for u in ok], [float(u.num_samples) for u in ok])
        return ServerState(new, dict(server.extra)), {"aggregated": len(ok)}
