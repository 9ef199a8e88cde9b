"""Markdown comparison table of runs (one row per run)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from airtune.report.runs import Run

__all__ = [
    "comparison_table",
    "run_stats",
    "format_number",
    "format_accuracy",
]

_MISSING = "—"


def _last(metrics: list[dict[str, Any]], key: str) -> float | None:
    for m in reversed(metrics):
        if m.get(key) is not None:
            return float(m[key])
    return None


def _total(metrics: list[dict[str, Any]], cum_key: str, key: str) -> float | None:
    """Last logged running total, else the sum of the per-round values (``None`` if neither)."""
    last = _last(metrics, cum_key)
    if last is not None:
        return last
    vals = [float(m[key]) for m in metrics if m.get(key) is not None]
    return sum(vals) if vals else None


def run_stats(run: Run, target_accuracy: float | None = None) -> dict[str, Any]:
    """Headline numbers of one run (``None`` where the run did not log the quantity).

    Keys: ``rounds`` (number of rounds logged), ``final_accuracy`` (last evaluated),
    ``best_accuracy``, ``sim_time_s`` (final cumulative simulated time), ``uplink_bits``,
    ``downlink_bits``, ``energy_j`` (totals), and ``rounds_to_target``: the number of rounds
    completed (``round + 1``) when accuracy first reached ``target_accuracy``; ``None`` if never.
    """
    ms = run.metrics
    accs = [(int(m["round"]), float(m["accuracy"])) for m in ms if m.get("accuracy") is not None and m.get("round") is not None]
    final = accs[-1][1] if accs else run.summary.get("final_accuracy")
    best = max(a for _, a in accs) if accs else run.summary.get("best_accuracy")
    to_target = None
    if target_accuracy is not None:
        to_target = next((rnd + 1 for rnd, a in accs if a >= target_accuracy), None)
    return {
        "rounds": len(ms),
        "final_accuracy": final,
        "best_accuracy": best,
        "sim_time_s": _last(ms, "sim_time_s"),
        "uplink_bits": _total(ms, "cum_uplink_bits", "uplink_bits"),
        "downlink_bits": _total(ms, "cum_downlink_bits", "downlink_bits"),
        "energy_j": _total(ms, "cum_energy_j", "energy_j"),
        "rounds_to_target": to_target,
    }


def format_number(x: float | None) -> str:
    """Readable number: thousands separators when large, 2 d.p. from 1, 4 significant digits below."""
    if x is None or not math.isfinite(x):
        return _MISSING
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.4g}"


def format_accuracy(x: float | None) -> str:
    return _MISSING if x is None or not math.isfinite(float(x)) else f"{float(x):.4f}"


def _mbit(bits: float | None) -> str:
    return format_number(None if bits is None else bits / 1e6)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def comparison_table(runs: Sequence[Run], target_accuracy: float | None = None) -> str:
    """Markdown table comparing ``runs``, one row per run, in the given order.

    Columns: run (label), strategy, rounds, final accuracy, best accuracy (4 d.p.),
    sim time (s), uplink (Mbit), downlink (Mbit), energy (J), and, when ``target_accuracy`` is
    given, the rounds needed to first reach it (``not reached`` otherwise). Missing values are "—".
    """
    header = ["run", "strategy", "rounds", "final accuracy", "best accuracy", "sim time (s)",
              "uplink (Mbit)", "downlink (Mbit)", "energy (J)"]
    if target_accuracy is not None:
        header.append(f"rounds to {target_accuracy:.4f} acc")
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    for r in runs:
        s = run_stats(r, target_accuracy)
        row = [_cell(r.label), _cell(r.strategy), str(s["rounds"]), format_accuracy(s["final_accuracy"]),
               format_accuracy(s["best_accuracy"]), format_number(s["sim_time_s"]), _mbit(s["uplink_bits"]),
               _mbit(s["downlink_bits"]), format_number(s["energy_j"])]
        if target_accuracy is not None:
            row.append("not reached" if s["rounds_to_target"] is None else str(s["rounds_to_target"]))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
