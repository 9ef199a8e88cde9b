"""Named registries: a strategy, allocator, scheduler, partitioner, fading model or model is added
with one decorator, inside airtune (in its package's registration point, ``Registry.builtins``) or from
another package through the ``airtune.plugins`` entry point (docs/extending.md).

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
    """A name -> object map with helpful errors.

    ``builtins`` are the modules whose import registers the built-in entries (the package's one
    registration point); they are imported, with the plugins, at the first look-up.
    """

    def __init__(self, kind: str, builtins: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.builtins = builtins
        self._items: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise RegistryError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            import importlib

            for mod in self.builtins:
                importlib.import_module(mod)
            _ensure_plugins_loaded()

    def get(self, name: str) -> T:
        self._load()
        if name not in self._items:
            raise RegistryError(
                f"unknown {self.kind} '{name}': choose one of {', '.join(sorted(self._items))}"
            )
        return self._items[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items


STRATEGIES: Registry = Registry("strategy", ("airtune.strategies",))   # its __init__ imports every strategy
ALLOCATORS: Registry = Registry("allocator", ("airtune.allocation.builtin",))
SCHEDULERS: Registry = Registry("scheduler", ("airtune.allocation.builtin",))
PARTITIONERS: Registry = Registry("partitioner", ("airtune.data.partition",))
FADING: Registry = Registry("fading model", ("airtune.wireless.fading",))
MODELS: Registry = Registry("model", ("airtune.models.zoo",))
REGULARIZERS: Registry = Registry("regulariser", ("airtune.strategies",))  # strategies register theirs

ALL = {"models": MODELS, "strategies": STRATEGIES, "allocators": ALLOCATORS,
       "schedulers": SCHEDULERS, "partitioners": PARTITIONERS, "fading": FADING}

PLUGIN_GROUP = "airtune.plugins"
"""Entry-point group of third-party components (docs/extending.md): each entry point names a
module (imported) or a function (called), whose ``@REGISTRY.register`` decorators add them."""

_plugins_loaded = False


def _ensure_plugins_loaded() -> None:
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        load_plugins()


def load_plugins() -> list[str]:
    """Load every ``airtune.plugins`` entry point; return their names. A plugin that fails to
    load is a one-line RegistryError naming it and its target."""
    from importlib.metadata import entry_points

    names = []
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            obj = ep.load()
            if callable(obj):
                obj()
        except RegistryError:
            raise
        except Exception as exc:  # noqa: BLE001 - any plugin failure is reported the same way
            raise RegistryError(f"plugin '{ep.name}' ({ep.value}) failed to load: {exc.__class__.__name__}: {exc}; "
                                f"fix: repair or uninstall the package that provides it") from exc
        names.append(ep.name)
    return names
