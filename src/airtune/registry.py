"""Named registries: a strategy, allocator, partitioner or model is added with one decorator.

Example::

    from airtune.registry import STRATEGIES

    @STRATEGIES.register("fedit")
    class FedIT: ...

`airtune ls` prints every registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from airtune.errors import RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object map with helpful errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise RegistryError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        _ensure_builtins_loaded()
        if name not in self._items:
            raise RegistryError(
                f"unknown {self.kind} '{name}': choose one of {', '.join(sorted(self._items))}"
            )
        return self._items[name]

    def names(self) -> list[str]:
        _ensure_builtins_loaded()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        _ensure_builtins_loaded()
        return name in self._items


STRATEGIES: Registry = Registry("strategy")
ALLOCATORS: Registry = Registry("allocator")
SCHEDULERS: Registry = Registry("scheduler")
PARTITIONERS: Registry = Registry("partitioner")
MODELS: Registry = Registry("model")

ALL = {"models": MODELS, "strategies": STRATEGIES, "allocators": ALLOCATORS,
       "schedulers": SCHEDULERS, "partitioners": PARTITIONERS}

_loaded = False


def _ensure_builtins_loaded() -> None:
    """Import the modules whose decorators fill the registries (once, lazily)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    for mod in (
        "airtune.models.zoo",
        "airtune.strategies",
        "airtune.allocation.baselines",
        "airtune.allocation.split_fed.planner",
        "airtune.allocation.tsfa.planner",
        "airtune.allocation.switching.planner",
        "airtune.data.partition",
    ):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:  # a module not written yet must not hide the others
            if exc.name != mod:
                raise
