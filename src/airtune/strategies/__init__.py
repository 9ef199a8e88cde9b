"""Federated strategies; importing this package registers every built-in strategy."""

from airtune.strategies import fedit, ffa_lora, flexlora, flora, full_ft, hetlora  # noqa: F401  (registration side effects)
from airtune.strategies.base import ServerState, Strategy, StrategyContext

__all__ = ["ServerState", "Strategy", "StrategyContext"]
