"""Sweeps: rounds and simulated time to a target accuracy against a config value (``--sweep``).

Runs are grouped into series by one config key (default ``strategy.name``) and placed on the
x axis by another (e.g. ``num_devices``): the "rounds to reach the target vs number of devices"
figure of paper 3 [wang2025switching], for any swept parameter. Values come from each run's
``config.resolved.yaml``; the rounds and times from its ``metrics.jsonl``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from airtune.errors import DataError
from airtune.report.runs import Run
from airtune.report.tables import _num, run_stats

__all__ = ["config_value", "sweep_points", "sweep_table", "plot_sweep"]


def config_value(run: Run, key: str) -> Any:
    """Value of the dotted ``key`` (``strategy.name``, ``num_devices`` ...) in the run's resolved config."""
    node: Any = run.config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise DataError(f"run '{run.label}' ({run.path}) has no config key '{key}'; fix: pass a key of its "
                            "config.resolved.yaml, e.g. --sweep num_devices --series strategy.name")
        node = node[part]
    return node


def _time_at_round(run: Run, rnd: int) -> float | None:
    for m in run.metrics:
        if m.get("round") is not None and int(m["round"]) + 1 == rnd and m.get("sim_time_s") is not None:
            return float(m["sim_time_s"])
    return None


def sweep_points(runs: Sequence[Run], key: str, series: str, target_accuracy: float) -> list[dict[str, Any]]:
    """One dict per run, sorted by series then x: ``series``, ``x``, ``label``,
    ``rounds_to_target`` (``None``: not reached), ``time_to_target_s`` (cumulative simulated time
    at the end of that round), ``final_accuracy``, ``best_accuracy``, ``rounds``."""
    points = []
    for r in runs:
        st = run_stats(r, target_accuracy)
        rt = st["rounds_to_target"]
        points.append({"series": str(config_value(r, series)), "x": config_value(r, key), "label": r.label,
                       "rounds_to_target": rt, "time_to_target_s": None if rt is None else _time_at_round(r, rt),
                       "final_accuracy": st["final_accuracy"], "best_accuracy": st["best_accuracy"],
                       "rounds": st["rounds"]})
    return sorted(points, key=lambda p: (p["series"], float(p["x"])))


def sweep_table(points: list[dict[str, Any]], key: str, series: str, target_accuracy: float) -> str:
    """Markdown table of :func:`sweep_points` ("not reached in N rounds" where the target was missed)."""
    lines = [f"### Rounds and simulated time to accuracy {target_accuracy:g} vs `{key}`", "",
             f"| `{series}` | `{key}` | run | rounds to {target_accuracy:g} | simulated time to {target_accuracy:g} (s) "
             "| best accuracy | final accuracy |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for p in points:
        reached = p["rounds_to_target"] is not None
        rounds = str(p["rounds_to_target"]) if reached else f"not reached in {p['rounds']}"
        lines.append(f"| {p['series']} | {p['x']} | {p['label']} | {rounds} | "
                     f"{_num(p['time_to_target_s']) if reached else '—'} | {_num(p['best_accuracy'])} | "
                     f"{_num(p['final_accuracy'])} |")
    return "\n".join(lines) + "\n"


def plot_sweep(points: list[dict[str, Any]], key: str, target_accuracy: float,
               out_dir: str | os.PathLike[str]) -> list[Path]:
    """``sweep_<key>_rounds.png`` and ``sweep_<key>_time.png``: one line per series; a run that
    never reached the target is drawn as an open marker at its number of rounds (a lower bound)."""
    from airtune.report.plots import _finish, _new_axes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for what, ylabel in (("rounds", "rounds to reach"), ("time", "simulated time (s) to reach")):
        fig, ax = _new_axes(f"{ylabel.split(' to')[0].capitalize()} to accuracy {target_accuracy:g} vs {key}",
                            key, f"{ylabel} {target_accuracy:g}")
        plotted = False
        for name in dict.fromkeys(p["series"] for p in points):
            pts = [p for p in points if p["series"] == name]
            field = "rounds_to_target" if what == "rounds" else "time_to_target_s"
            hit = [(float(p["x"]), float(p[field])) for p in pts if p[field] is not None]
            line = ax.plot([x for x, _ in hit], [y for _, y in hit], marker="o", label=name)[0] if hit else None
            if what == "rounds":
                miss = [(float(p["x"]), float(p["rounds"])) for p in pts if p["rounds_to_target"] is None]
                if miss:
                    ax.plot([x for x, _ in miss], [y for _, y in miss], linestyle="none", marker="o",
                            markerfacecolor="none", color=line.get_color() if line else None,
                            label=None if line else f"{name} (not reached)")
            plotted |= bool(hit)
        files.append(_finish(fig, ax, out / f"sweep_{key.replace('.', '_')}_{what}.png", plotted))
    return files
