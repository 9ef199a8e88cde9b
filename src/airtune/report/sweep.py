"""Sweeps: rounds and simulated time to a target accuracy against a config value (``--sweep``).

Runs are grouped into series by one config key (default ``strategy.name``) and placed on the
x axis by another (e.g. ``num_devices``): the "rounds to reach the target vs number of devices"
figure of paper 3 [wang2025switching], for any swept parameter. Values come from each run's
``config.resolved.yaml``; the rounds and times from its ``metrics.jsonl``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airtune.errors import DataError
from airtune.report.runs import Run
from airtune.report.tables import format_accuracy, format_number, run_stats

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
    at the end of that round), ``rounds_bound`` / ``time_bound_s`` (the same, or for a run that
    missed the target its length / final simulated time: a lower bound), ``final_accuracy``,
    ``best_accuracy``, ``rounds``."""
    points = []
    for r in runs:
        st = run_stats(r, target_accuracy)
        rt = st["rounds_to_target"]
        t = None if rt is None else _time_at_round(r, rt)
        points.append({"series": str(config_value(r, series)), "x": config_value(r, key), "label": r.label,
                       "rounds_to_target": rt, "time_to_target_s": t,
                       "rounds_bound": rt if rt is not None else st["rounds"],
                       "time_bound_s": t if rt is not None else st["sim_time_s"],
                       "final_accuracy": st["final_accuracy"], "best_accuracy": st["best_accuracy"],
                       "rounds": st["rounds"]})
    return sorted(points, key=lambda p: (p["series"], float(p["x"])))


def _groups(points: list[dict[str, Any]]) -> list[tuple[str, Any, list[dict[str, Any]]]]:
    """``(series, x, points)`` per distinct pair, in the order of :func:`sweep_points`."""
    keys = list(dict.fromkeys((p["series"], p["x"]) for p in points))
    return [(name, x, [p for p in points if (p["series"], p["x"]) == (name, x)]) for name, x in keys]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _bound_mean(pts: list[dict[str, Any]], field: str) -> str:
    """Mean of ``field`` over the runs; "≥" when a run missed the target (its bound counts)."""
    vals = [float(p[field]) for p in pts if p[field] is not None]
    if not vals:
        return "—"
    missed = any(p["rounds_to_target"] is None for p in pts)
    return ("≥ " if missed else "") + format_number(sum(vals) / len(vals))


def sweep_table(points: list[dict[str, Any]], key: str, series: str, target_accuracy: float) -> str:
    """Markdown: one row per (series, value) with means over its runs (seeds), then one row per run.

    A run that missed the target counts with its length (rounds) and final simulated time, so a
    mean over such runs is a lower bound and is marked "≥"."""
    t = f"{target_accuracy:g}"
    lines = [f"### Rounds and simulated time to accuracy {t} vs `{key}`", "",
             f"Means over the runs (seeds); a run that missed {t} counts with its length and final simulated "
             "time, so such a mean is a lower bound (≥). The per-run rows follow.", "",
             f"| `{series}` | `{key}` | runs reaching {t} | mean rounds to {t} | mean simulated time to {t} (s) "
             "| mean best accuracy |", "|---|---:|---:|---:|---:|---:|"]
    for name, x, pts in _groups(points):
        hit = [p for p in pts if p["rounds_to_target"] is not None]
        lines.append(f"| {name} | {x} | {len(hit)} / {len(pts)} | {_bound_mean(pts, 'rounds_bound')} "
                     f"| {_bound_mean(pts, 'time_bound_s')} "
                     f"| {format_accuracy(_mean([p['best_accuracy'] for p in pts if p['best_accuracy'] is not None]))} |")
    lines += ["", f"| `{series}` | `{key}` | run | rounds to {t} | simulated time to {t} (s) "
              "| best accuracy | final accuracy |", "|---|---:|---|---:|---:|---:|---:|"]
    for p in points:
        reached = p["rounds_to_target"] is not None
        rounds = str(p["rounds_to_target"]) if reached else f"not reached in {p['rounds']}"
        lines.append(f"| {p['series']} | {p['x']} | {p['label']} | {rounds} | "
                     f"{format_number(p['time_to_target_s']) if reached else '—'} | {format_accuracy(p['best_accuracy'])} | "
                     f"{format_accuracy(p['final_accuracy'])} |")
    return "\n".join(lines) + "\n"


def plot_sweep(points: list[dict[str, Any]], key: str, target_accuracy: float,
               out_dir: str | os.PathLike[str]) -> list[Path]:
    """``sweep_<key>_rounds.png`` and ``sweep_<key>_time.png``: per series a line through the means
    of :func:`sweep_table` (misses counted at their bound), every run as a small dot when a value
    has several, and a run that missed the target as an open marker at its bound."""
    from airtune.report.plots import finish_plot, new_axes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for what, field, ylabel in (("rounds", "rounds_bound", "rounds to reach"),
                                ("time", "time_bound_s", "simulated time (s) to reach")):
        title = "Rounds" if what == "rounds" else "Simulated time"
        fig, ax = new_axes(f"{title} to accuracy {target_accuracy:g} vs {key}", key,
                            f"{ylabel} {target_accuracy:g}")
        plotted = False
        for name in dict.fromkeys(p["series"] for p in points):
            groups = [(float(x), pts) for n, x, pts in _groups(points) if n == name]
            means = [(x, _mean([float(p[field]) for p in pts if p[field] is not None])) for x, pts in groups]
            means = [(x, m) for x, m in means if m is not None]
            color = None
            if means:
                color = ax.plot([x for x, _ in means], [m for _, m in means], marker="o", label=name)[0].get_color()
                plotted = True
            dots = [(x, float(p[field])) for x, pts in groups for p in pts
                    if p[field] is not None and p["rounds_to_target"] is not None]
            if len(dots) > len(means):  # several runs at a value: show each
                ax.plot([x for x, _ in dots], [y for _, y in dots], linestyle="none", marker=".", color=color,
                        alpha=0.5)
            miss = [(x, float(p[field])) for x, pts in groups for p in pts
                    if p["rounds_to_target"] is None and p[field] is not None]
            if miss:
                ax.plot([x for x, _ in miss], [y for _, y in miss], linestyle="none", marker="o",
                        markerfacecolor="none", color=color, label=None if means else f"{name} (not reached)")
        ys = [float(p[field]) for p in points if p[field] is not None and float(p[field]) > 0]
        if ys and max(ys) / min(ys) > 20:  # e.g. full fine-tuning next to LoRA: a log axis keeps both readable
            ax.set_yscale("log")
        files.append(finish_plot(fig, ax, out / f"sweep_{key.replace('.', '_')}_{what}.png", plotted))
    return files
