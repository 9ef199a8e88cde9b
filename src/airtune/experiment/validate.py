"""Checks that need the registries (beyond the pydantic schema): names and strategy options."""

from __future__ import annotations

from airtune.config import Config
from airtune.errors import ConfigError, RegistryError
from airtune.registry import ALL, ALLOCATORS, FADING, PARTITIONERS, SCHEDULERS, STRATEGIES


def registry_errors(cfg: Config) -> list[str]:
    """One line per problem: unknown strategy or allocator, invalid strategy options."""
    try:  # built-ins and plugins first: a plugin that fails to load is the one error to report
        for reg in ALL.values():
            reg.names()
    except RegistryError as exc:
        return [str(exc)]
    errors: list[str] = []
    try:
        strategy = STRATEGIES.get(cfg.strategy.name)
        strategy(cfg.strategy.options)
        if (strategy.uses_lora and not strategy.supports_heterogeneous_ranks
                and cfg.lora.device_ranks != "uniform_rank"):
            hetero = [n for n in STRATEGIES.names()
                      if getattr(STRATEGIES.get(n), "supports_heterogeneous_ranks", False)]
            errors.append(f"lora.device_ranks = '{cfg.lora.device_ranks}': strategy '{cfg.strategy.name}' trains "
                          f"one shared rank (lora.rank); fix: set lora.device_ranks=uniform_rank, or choose a "
                          f"heterogeneous-rank strategy ({', '.join(hetero)})")
    except RegistryError:
        errors.append(f"strategy.name = '{cfg.strategy.name}': unknown strategy; "
                      f"fix: choose one of {', '.join(STRATEGIES.names())}")
    except ConfigError as exc:
        errors.extend(str(exc).splitlines())
    for field, value, registry in (("data.partition", cfg.data.partition, PARTITIONERS),
                                   ("allocation.scheduler", cfg.allocation.scheduler, SCHEDULERS),
                                   ("wireless.fading", cfg.wireless.fading, FADING)):
        if value not in registry:
            errors.append(f"{field} = '{value}': unknown {registry.kind}; fix: choose one of {', '.join(registry.names())}")
    if cfg.allocation.name not in ALLOCATORS:
        errors.append(f"allocation.name = '{cfg.allocation.name}': unknown allocator; "
                      f"fix: choose one of {', '.join(ALLOCATORS.names())}")
    else:
        errors.extend(allocator_option_errors(cfg))
        errors.extend(declaration_errors([cfg.allocation.name], "allocator", ALLOCATORS.get))
        if cfg.strategy.name in STRATEGIES:
            errors.extend(declaration_errors([cfg.strategy.name], "strategy", STRATEGIES.get))
            if cfg.train.proximal_mu > 0 and cfg.strategy.name == "split_fedlora":
                errors.append(f"train.proximal_mu = {cfg.train.proximal_mu:g}: the split loop has no proximal term; "
                              "fix: set train.proximal_mu=0 with strategy split_fedlora")
            so = cfg.strategy.server_optimizer.name
            if so != "none" and not STRATEGIES.get(cfg.strategy.name).supports_server_optimizer:
                errors.append(f"strategy.server_optimizer.name = '{so}': strategy '{cfg.strategy.name}' does not "
                              "aggregate by a parameter step (strategies/server_opt.py); fix: set "
                              "strategy.server_optimizer.name=none or use another strategy")
            errors.extend(pair_errors(cfg.strategy.name, cfg.allocation.name))
    return errors


def _exchange(allocator: str) -> tuple[frozenset[str], frozenset[str]]:
    """``(directives, needs_hints)`` of a registered allocator (plain functions: none)."""
    obj = ALLOCATORS.get(allocator)
    return getattr(obj, "directives", frozenset()), getattr(obj, "needs_hints", frozenset())


def _compatible(strategy: str, allocator: str) -> bool:
    s = STRATEGIES.get(strategy)
    directives, needs = _exchange(allocator)
    return directives <= s.accepts_directives and s.requires_directives <= directives and needs <= s.provides_hints


def pair_errors(strategy: str, allocator: str) -> list[str]:
    """One line when the strategy and the allocator cannot work together: the allocator sets
    directives the strategy ignores (or lacks ones it requires), or needs hints it does not give."""
    if _compatible(strategy, allocator):
        return []
    s = STRATEGIES.get(strategy)
    directives, needs = _exchange(allocator)
    why = []
    if directives - s.accepts_directives:
        why.append(f"it sets {sorted(directives - s.accepts_directives)} that the strategy ignores")
    if s.requires_directives - directives:
        why.append(f"the strategy needs {sorted(s.requires_directives - directives)} that it does not set")
    if needs - s.provides_hints:
        why.append(f"it needs {sorted(needs - s.provides_hints)} hints that the strategy does not give")
    allocators = [a for a in ALLOCATORS.names() if _compatible(strategy, a)]
    strategies = [n for n in STRATEGIES.names() if _compatible(n, allocator)]
    return [f"strategy.name = '{strategy}' and allocation.name = '{allocator}' do not work together "
            f"({'; '.join(why)}); fix: with {strategy} use allocation.name one of {', '.join(allocators) or 'none'}, "
            f"or with {allocator} use strategy.name one of {', '.join(strategies) or 'none'}"]


def allocator_option_errors(cfg: Config) -> list[str]:
    """``allocation.options`` checked by the allocator's own options model (functions take none)."""
    from airtune.allocation.planner import Planner
    from airtune.strategies.base import parse_options

    obj, options = ALLOCATORS.get(cfg.allocation.name), cfg.allocation.options
    if isinstance(obj, type) and issubclass(obj, Planner):
        from airtune.wireless.link import link_from_config

        errors: list[str] = []
        for check in (lambda: parse_options(obj.Options, options, cfg.allocation.name, section="allocation.options"),
                      lambda: obj.check_link(link_from_config(cfg.wireless))):
            try:
                check()
            except ConfigError as exc:
                errors.extend(str(exc).splitlines())
        return errors
    if options:
        return [f"allocation.options = {options!r}: allocator '{cfg.allocation.name}' takes no options; "
                "fix: remove allocation.options"]
    return []


def check(cfg: Config) -> None:
    errors = registry_errors(cfg)
    if errors:
        err = ConfigError("\n".join(errors))
        err.errors = errors  # type: ignore[attr-defined]
        raise err


def preflight(cfg: Config) -> None:
    """Checks of the outside world made before a run directory is created: the data directory
    exists (unless the Hugging Face hub fallback applies)."""
    import os

    from airtune.data.glue import ENV_DATA_DIR, datasets_importable, resolve_data_dir

    if cfg.data.dir or os.environ.get(ENV_DATA_DIR) or not datasets_importable():
        resolve_data_dir(cfg.data.dir)


def ignored_settings(cfg: Config) -> list[str]:
    """Settings that differ from their default but that the chosen components do not read (one
    line each; ``airtune validate`` prints them as warnings, ``airtune run`` logs them)."""
    from airtune.config.schema import AllocationConfig, LoraConfig

    out: list[str] = []
    if cfg.allocation.name in ALLOCATORS:
        planner = ALLOCATORS.get(cfg.allocation.name)
        if not getattr(planner, "uses_scheduler", True) and cfg.allocation.scheduler != AllocationConfig().scheduler:
            out.append(f"allocation.scheduler = '{cfg.allocation.scheduler}' is ignored: allocation.name = "
                       f"'{cfg.allocation.name}' chooses the devices itself; fix: add allocation.name=equal to "
                       "schedule with it")
    if cfg.strategy.name in STRATEGIES:
        strategy = STRATEGIES.get(cfg.strategy.name)
        if not getattr(strategy, "uses_lora_rank", True) and cfg.lora.rank != LoraConfig().rank:
            out.append(f"lora.rank = {cfg.lora.rank} is ignored by strategy.name = '{cfg.strategy.name}' "
                       "(no adapters, or ranks from its strategy.options)")
    return out


def exchange_error(sent: frozenset[str], declared: frozenset[str], who: str, what: str) -> str | None:
    """One line when a component sends a directive or hint kind it did not declare (the runner
    checks this every round, so that ``airtune validate``'s pair check can trust the
    declarations); None when ``sent`` is within ``declared``."""
    extra = sorted(sent - declared)
    if not extra:
        return None
    return (f"{who} sent {what} {extra} but declares only {sorted(declared)}; fix: add them to its "
            f"declaration ({'directives' if what == 'directives' else 'provides_hints'}) or stop sending them")


def declaration_errors(names: list[str], kind: str, get) -> list[str]:
    """Components (of a registry) whose declared exchange kinds are not fields of
    ``allocation.exchange.Directives`` / ``Hints`` (e.g. a typo in a plugin)."""
    from airtune.allocation.exchange import directive_kinds, hint_kinds

    valid = {"directives": directive_kinds(), "hints": hint_kinds()}
    attrs = {"strategy": (("accepts_directives", "directives"), ("requires_directives", "directives"),
                          ("provides_hints", "hints")),
             "allocator": (("directives", "directives"), ("needs_hints", "hints"))}[kind]
    out = []
    for name in names:
        obj = get(name)
        for attr, space in attrs:
            bad = sorted(set(getattr(obj, attr, frozenset())) - valid[space])
            if bad:
                out.append(f"{kind} '{name}' declares {attr} {bad}, which are not {space} kinds; "
                           f"fix: use names from {sorted(valid[space])}")
    return out
