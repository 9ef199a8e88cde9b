"""Checks that need the registries (beyond the pydantic schema): names and strategy options."""

from __future__ import annotations

from airtune.config import Config
from airtune.errors import ConfigError, RegistryError
from airtune.registry import ALLOCATORS, STRATEGIES


def registry_errors(cfg: Config) -> list[str]:
    """One line per problem: unknown strategy or allocator, invalid strategy options."""
    errors: list[str] = []
    try:
        STRATEGIES.get(cfg.strategy.name)(cfg.strategy.options)
    except RegistryError:
        errors.append(f"strategy.name = '{cfg.strategy.name}': unknown strategy; "
                      f"fix: choose one of {', '.join(STRATEGIES.names())}")
    except ConfigError as exc:
        errors.extend(str(exc).splitlines())
    if cfg.allocation.name not in ALLOCATORS:
        errors.append(f"allocation.name = '{cfg.allocation.name}': unknown allocator; "
                      f"fix: choose one of {', '.join(ALLOCATORS.names())}")
    return errors


def check(cfg: Config) -> None:
    errors = registry_errors(cfg)
    if errors:
        err = ConfigError("\n".join(errors))
        err.errors = errors  # type: ignore[attr-defined]
        raise err
