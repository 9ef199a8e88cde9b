"""A sweep spec: a base config, schemes (named override sets), a grid of overrides, seeds.

Example (``configs/sweeps/*.yaml``)::

    name: soft-vs-ideal
    base: ../soft/sst2-ideal.yaml        # relative to the spec file; null: built-in defaults
    overrides: [rounds=16]               # applied to every run
    sets:                                # optional: override lists that schemes share
      tsfa: [strategy.name=soft, allocation.name=tsfa]
    schemes:                             # named override sets: the methods being compared
      ideal: []
      soft_tsfa: ["@tsfa", allocation.options.latency_budget_s=4]   # "@name": the set's overrides
    grid:                                # cartesian product, applied on top of every scheme
      num_devices: [20, 50]
    seeds: [0, 1, 2, 3, 4]
    workers: 2                           # parallel worker processes
    threads_per_worker: 1                # train.num_threads of every run (workers x threads <= cores)

Every run is one (scheme, grid point, seed); its id is ``<scheme>[__key=value...]__seed<k>``.
Every run's config is built and validated before anything runs (all errors at once).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from airtune.config import Config, load_config
from airtune.errors import ConfigError
from airtune.experiment.validate import check

__all__ = ["RunSpec", "SweepSpec", "expand", "load_spec"]

_ID_SAFE = re.compile(r"[^A-Za-z0-9_.=+-]")


class SweepSpec(BaseModel):
    """The YAML of a sweep (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., min_length=1, description="sweep name (the default output folder)")
    base: str | None = Field(None, description="base config, relative to the spec file; null: built-in defaults")
    overrides: list[str] = Field(default_factory=list, description="key=value overrides of every run")
    sets: dict[str, list[str]] = Field(default_factory=dict,
                                       description="named override lists a scheme includes as '@name'")
    schemes: dict[str, list[str]] = Field(default_factory=lambda: {"base": []},
                                          description="named override sets (the compared methods)")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="config key -> values (cartesian product)")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="seeds of every scheme and point")
    workers: int = Field(1, ge=1, description="parallel worker processes")
    threads_per_worker: int = Field(1, ge=1, description="train.num_threads of each run")

    @field_validator("schemes")
    @classmethod
    def _schemes(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        if not v:
            raise ValueError("needs at least one scheme; fix: give e.g. schemes: {base: []}")
        bad = [k for k in v if _ID_SAFE.search(k) or "__" in k]
        if bad:
            raise ValueError(f"scheme names {bad} may use letters, digits and _.=+- only (no '__'); fix: rename them")
        return v

    @model_validator(mode="after")
    def _set_references(self) -> SweepSpec:
        for scheme, extra in self.schemes.items():
            for item in extra:
                if item.startswith("@") and item[1:] not in self.sets:
                    known = ", ".join(f"@{k}" for k in self.sets) or "none (add a sets: mapping)"
                    raise ValueError(f"scheme '{scheme}' includes '{item}', which is not a set; fix: use one of "
                                     f"{known}")
        return self

    def scheme_overrides(self, scheme: str) -> list[str]:
        """The scheme's overrides with every ``@set`` replaced by the set's overrides, in place."""
        out: list[str] = []
        for item in self.schemes[scheme]:
            out += self.sets[item[1:]] if item.startswith("@") else [item]
        return out

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [k for k, vals in v.items() if not vals]
        if empty:
            raise ValueError(f"grid keys {empty} have no values; fix: give each a non-empty list")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v) or any(s < 0 for s in v):
            raise ValueError(f"seeds {v} must be distinct and >= 0")
        return v


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep."""

    run_id: str
    scheme: str
    point: dict[str, Any]
    seed: int
    overrides: list[str] = field(default_factory=list)   # everything on top of the base config
    config: dict[str, Any] = field(default_factory=dict)  # the validated, resolved config


def load_spec(path: str | Path) -> tuple[SweepSpec, Path | None]:
    """Read and validate a spec; return it with the resolved base-config path."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"sweep spec '{path}' does not exist; fix: pass the path of a sweep YAML") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"sweep spec '{path}' is not valid YAML ({exc.__class__.__name__}); fix: correct it") from exc
    try:
        spec = SweepSpec.model_validate(raw or {})
    except ValidationError as exc:
        lines = [f"sweep spec '{path}': {'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}"
                 for e in exc.errors(include_url=False)]
        err = ConfigError("\n".join(lines))
        err.errors = lines  # type: ignore[attr-defined]
        raise err from None
    base = None if spec.base is None else (path.parent / spec.base).resolve()
    if base is not None and not base.exists():
        raise ConfigError(f"sweep spec '{path}': base = '{spec.base}' not found at {base}; fix: give a path "
                          "relative to the spec file")
    return spec, base


def _fmt(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip() if isinstance(value, (list, dict)) else str(value)


def expand(spec: SweepSpec, base: Path | None) -> list[RunSpec]:
    """Every run of the sweep, configs validated; raises one ConfigError listing every problem."""
    keys = list(spec.grid)
    runs, errors = [], []
    for scheme in spec.schemes:
        extra = spec.scheme_overrides(scheme)
        for values in itertools.product(*(spec.grid[k] for k in keys)):
            point = dict(zip(keys, values))
            for seed in spec.seeds:
                tag = "".join(f"__{k}={_ID_SAFE.sub('-', _fmt(v))}" for k, v in point.items())
                run_id = f"{scheme}{tag}__seed{seed}"
                overrides = [*spec.overrides, *extra, *(f"{k}={_fmt(v)}" for k, v in point.items()),
                             f"seed={seed}", f"train.num_threads={spec.threads_per_worker}", f"name={run_id}"]
                try:
                    cfg = load_config(base, overrides)
                    check(cfg)
                except ConfigError as exc:
                    errors += [f"{run_id}: {line}" for line in (getattr(exc, "errors", None) or str(exc).splitlines())]
                    continue
                runs.append(RunSpec(run_id, scheme, point, seed, overrides, _dump(cfg)))
    if errors:
        err = ConfigError("\n".join(errors))
        err.errors = errors  # type: ignore[attr-defined]
        raise err
    return runs


def _dump(cfg: Config) -> dict[str, Any]:
    from airtune.config import config_to_dict

    return config_to_dict(cfg)
