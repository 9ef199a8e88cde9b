"""Federated strategies; importing this package registers every built-in strategy."""

from airtune.strategies import fedit, ffa_lora, flexlora, flora, full_ft, hetlora, switching  # noqa: F401  (registration side effects)
from airtune.strategies import split_fed  # noqa: F401  (split federated LoRA)
from airtune.strategies import soft, sparse_baselines  # noqa: F401  (SOFT and its baselines)
from airtune.strategies.base import ServerState, Strategy, StrategyContext

__all__ = ["ServerState", "Strategy", "StrategyContext"]
