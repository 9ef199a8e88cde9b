"""Federated strategies; importing this package registers every built-in strategy."""

from airtune.strategies import fedit, full_ft  # noqa: F401  (registration side effects)
from airtune.strategies.base import ServerState, Strategy

__all__ = ["ServerState", "Strategy"]
