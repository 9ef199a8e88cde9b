"""Progress display: a bar per round on a terminal, one plain line per evaluated round otherwise
(under ``nohup``, in CI, piped into a log), and a summary table."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(stderr=True)


class RoundProgress:
    """Shows each round's record: a rich progress bar when stdout is a terminal, else one plain,
    flushed line per evaluated round (``plain`` forces either)."""

    def __init__(self, cfg, enabled: bool = True, plain: bool | None = None, stream=None) -> None:
        self.cfg, self.enabled, self.acc = cfg, enabled, None
        self.stream = stream if stream is not None else sys.stdout
        self.plain = (not _isatty(self.stream)) if plain is None else plain
        self.t0 = time.perf_counter()
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console,
                                 disable=not enabled or self.plain)

    def __enter__(self) -> RoundProgress:
        self.progress.__enter__()
        self.task = self.progress.add_task(self.cfg.name, total=self.cfg.rounds, info="")
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def update(self, rec: dict[str, Any]) -> None:
        if rec.get("accuracy") is not None:
            self.acc = rec["accuracy"]
            if self.enabled and self.plain:
                print(plain_line(rec, self.cfg.rounds, time.perf_counter() - self.t0), file=self.stream, flush=True)
        acc = "—" if self.acc is None else f"{self.acc:.4f}"
        info = (f"acc {acc} | sim {rec['sim_time_s']:.1f} s | energy {rec['cum_energy_j']:.1f} J | "
                f"lost {len(rec.get('lost', []))}")
        self.progress.update(self.task, completed=rec["round"] + 1, info=info)


def plain_line(rec: dict[str, Any], rounds: int, wall_s: float) -> str:
    """One log line for an evaluated round: round, accuracy, simulated time, energy, wall time."""
    return (f"round {rec['round'] + 1}/{rounds}  accuracy {rec['accuracy']:.4f}  sim_time {rec['sim_time_s']:.1f} s  "
            f"energy {rec['cum_energy_j']:.2f} J  wall {wall_s:.1f} s")


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def print_summary(summary: dict[str, Any], run_dir: Path) -> None:
    table = Table(title=f"airtune run: {run_dir}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.4f}" if "accuracy" in key else f"{value:,.2f}"
        elif isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:,}"
        table.add_row(key, str(value))
    Console().print(table)
