"""Terminal display: a progress bar per round (accuracy, simulated time, energy) and a summary table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(stderr=True)


class RoundProgress:
    def __init__(self, cfg, enabled: bool = True) -> None:
        self.cfg, self.enabled, self.acc = cfg, enabled, None
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console,
                                 disable=not enabled)

    def __enter__(self) -> "RoundProgress":
        self.progress.__enter__()
        self.task = self.progress.add_task(self.cfg.name, total=self.cfg.rounds, info="")
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def update(self, rec: dict[str, Any]) -> None:
        if rec.get("accuracy") is not None:
            self.acc = rec["accuracy"]
        acc = "—" if self.acc is None else f"{self.acc:.4f}"
        info = (f"acc {acc} | sim {rec['sim_time_s']:.1f} s | energy {rec['cum_energy_j']:.1f} J | "
                f"lost {len(rec.get('lost', []))}")
        self.progress.update(self.task, completed=rec["round"] + 1, info=info)


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
