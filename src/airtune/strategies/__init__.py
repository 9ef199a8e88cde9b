"""Federated strategies; importing this package registers every built-in strategy."""

from airtune.strategies import (  # noqa: F401  (registration side effects)  # noqa: F401  (SOFT and its baselines)
    fedit,
    ffa_lora,
    flexlora,
    flora,
    full_ft,
    hetlora,
    soft,
    sparse_baselines,
    split_fed,  # noqa: F401  (split federated LoRA)
    switching,
)
from airtune.strategies.base import ServerState, Strategy, StrategyContext

__all__ = ["ServerState", "Strategy", "StrategyContext"]
