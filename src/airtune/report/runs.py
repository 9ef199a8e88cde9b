"""Load run directories written by ``airtune run --out`` (files only; never imports training code).

A run directory holds ``config.resolved.yaml``, ``env.json``, ``metrics.jsonl`` (one object per
round, see :class:`airtune.metrics.RoundRecord`), ``clients.jsonl`` and ``summary.json``. Only
``metrics.jsonl`` is required here; the others are read when present.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from airtune.errors import DataError
from airtune.metrics.logger import read_jsonl

__all__ = ["Run", "load_run", "load_runs"]

_FIX = "fix: pass a directory written by `airtune run --out`"


@dataclass
class Run:
    """One finished (or partial) run, as read from its directory.

    Attributes
    ----------
    path : Path
        The run directory.
    name : str
        ``name`` from ``config.resolved.yaml`` (the directory name when absent).
    label : str
        Name shown in plots and tables; unique among the runs loaded together by :func:`load_runs`.
    strategy : str
        ``strategy.name`` from the config (``"?"`` when absent).
    metrics : list of dict
        The ``metrics.jsonl`` lines, in file order.
    summary : dict
        ``summary.json`` (empty when absent).
    config : dict
        ``config.resolved.yaml`` (empty when absent).
    """

    path: Path
    name: str
    label: str
    strategy: str
    metrics: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def series(self, key: str, *, x: str = "round") -> tuple[list[float], list[float]]:
        """``(xs, ys)`` over the rounds where both ``x`` and ``key`` are present and not ``None``."""
        xs, ys = [], []
        for m in self.metrics:
            xv, yv = m.get(x), m.get(key)
            if xv is not None and yv is not None:
                xs.append(float(xv))
                ys.append(float(yv))
        return xs, ys

    def cumulative(self, cum_key: str, key: str) -> tuple[list[float], list[float]]:
        """``(rounds, running total)``: ``cum_key`` where logged, else the running sum of ``key``."""
        xs, ys, total = [], [], 0.0
        for m in self.metrics:
            if m.get("round") is None:
                continue
            if m.get(cum_key) is not None:
                total = float(m[cum_key])
            elif m.get(key) is not None:
                total += float(m[key])
            else:
                continue
            xs.append(float(m["round"]))
            ys.append(total)
        return xs, ys


def _read_config(path: Path) -> dict[str, Any]:
    f = path / "config.resolved.yaml"
    if not f.is_file():
        return {}
    try:
        cfg = yaml.safe_load(f.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DataError(f"{f}: not valid YAML ({str(exc).splitlines()[0]}); {_FIX}") from None
    return cfg if isinstance(cfg, dict) else {}


def _read_summary(path: Path) -> dict[str, Any]:
    f = path / "summary.json"
    if not f.is_file():
        return {}
    try:
        s = json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{f}: not valid JSON ({exc}); {_FIX}") from None
    return s if isinstance(s, dict) else {}


def _strategy_name(cfg: dict[str, Any]) -> str:
    s = cfg.get("strategy")
    if isinstance(s, dict) and s.get("name") is not None:
        return str(s["name"])
    if isinstance(s, str):
        return s
    return "?"


def load_run(run_dir: str | os.PathLike[str]) -> Run:
    """Read one run directory.

    Raises
    ------
    DataError (an :class:`airtune.errors.AirtuneError`)
        ``RUN_DIR 'x' has no metrics.jsonl; fix: pass a directory written by `airtune run --out```,
        or a file in it does not parse.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise DataError(f"RUN_DIR '{run_dir}' is not a directory; {_FIX}")
    if not (path / "metrics.jsonl").is_file():
        raise DataError(f"RUN_DIR '{run_dir}' has no metrics.jsonl; {_FIX}")
    cfg = _read_config(path)
    name = str(cfg.get("name") or path.resolve().name)
    metrics = read_jsonl(path / "metrics.jsonl")
    return Run(
        path=path,
        name=name,
        label=name,
        strategy=_strategy_name(cfg),
        metrics=metrics,
        summary=_read_summary(path),
        config=cfg,
    )


def _disambiguate(runs: list[Run]) -> None:
    """Make labels unique: ``name [dir]`` for duplicated names, then ``#2``, ``#3`` if still equal."""
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.name] = counts.get(r.name, 0) + 1
    for r in runs:
        if counts[r.name] > 1 and r.path.resolve().name != r.name:
            r.label = f"{r.name} [{r.path.resolve().name}]"
    seen: dict[str, int] = {}
    for r in runs:
        n = seen.get(r.label, 0) + 1
        seen[r.label] = n
        if n > 1:
            r.label = f"{r.label} #{n}"


def load_runs(run_dirs: Iterable[str | os.PathLike[str]]) -> list[Run]:
    """Read several run directories (in order) and give them unique labels."""
    runs = [load_run(d) for d in run_dirs]
    _disambiguate(runs)
    return runs
