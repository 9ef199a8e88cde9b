"""PNG figures comparing runs: accuracy vs round and vs simulated time, cumulative energy and bits.

Uses matplotlib's object API with the Agg canvas directly (no ``pyplot``, no display, no global
backend switch), so it is safe in headless jobs and alongside other matplotlib users.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from airtune.report.runs import Run

__all__ = [
    "plot_runs",
    "plot_metric",
    "PLOT_FILES",
    "new_axes",
    "finish_plot",
]

PLOT_FILES = ("accuracy_vs_round.png", "accuracy_vs_time.png", "energy.png", "bits.png")
"""File names :func:`plot_runs` writes, in order."""

_DPI = 120


def new_axes(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(6.4, 4.2), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def finish_plot(fig: Figure, ax: Axes, path: Path, plotted: bool) -> Path:
    if plotted:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no data in these runs", ha="center", va="center", transform=ax.transAxes)
    fig.savefig(path, format="png")
    return path


def _marker(n_points: int) -> str | None:
    return "o" if n_points <= 30 else None


def _accuracy(runs: Sequence[Run], path: Path, x: str, xlabel: str, title: str) -> Path:
    fig, ax = new_axes(title, xlabel, "test accuracy")
    plotted = False
    for r in runs:
        xs, ys = r.series("accuracy", x=x)  # rounds with accuracy=None are skipped
        if xs:
            ax.plot(xs, ys, marker=_marker(len(xs)), markersize=3, label=r.label)
            plotted = True
    return finish_plot(fig, ax, path, plotted)


def _energy(runs: Sequence[Run], path: Path) -> Path:
    fig, ax = new_axes("Cumulative device energy", "round", "cumulative energy (J)")
    plotted = False
    for r in runs:
        xs, ys = r.cumulative("cum_energy_j", "energy_j")
        if xs:
            ax.plot(xs, ys, label=r.label)
            plotted = True
    return finish_plot(fig, ax, path, plotted)


def _bits(runs: Sequence[Run], path: Path) -> Path:
    fig, ax = new_axes("Cumulative bits (solid: uplink, dashed: downlink)", "round", "cumulative bits")
    plotted = False
    positive: list[float] = []
    for r in runs:
        colour = None
        for cum_key, key, style, what in (
            ("cum_uplink_bits", "uplink_bits", "-", "uplink"),
            ("cum_downlink_bits", "downlink_bits", "--", "downlink"),
        ):
            xs, ys = r.cumulative(cum_key, key)
            if not xs:
                continue
            (line,) = ax.plot(xs, ys, linestyle=style, color=colour, label=f"{r.label} {what}")
            colour = line.get_color()  # same colour for a run's uplink and downlink
            positive += [y for y in ys if y > 0]
            plotted = True
    # Log scale when the curves span more than two decades (e.g. LoRA vs full fine-tuning).
    if positive and max(positive) / min(positive) > 100:
        ax.set_yscale("log")
    return finish_plot(fig, ax, path, plotted)


def plot_runs(runs: Sequence[Run], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write the comparison figures of ``runs`` into ``out_dir`` (created if needed).

    Figures (x = round index unless stated):

    - ``accuracy_vs_round.png``: test accuracy, only at rounds where it was evaluated.
    - ``accuracy_vs_time.png``: test accuracy vs cumulative simulated time ``sim_time_s`` (s).
    - ``energy.png``: cumulative device energy ``cum_energy_j`` (J).
    - ``bits.png``: cumulative uplink (solid) and downlink (dashed) bits; log y when they span
      more than two decades.

    A figure with nothing to plot still gets written, with a "no data" note, so that report
    links never break. Existing files of the same name are overwritten; nothing else is touched.

    Returns
    -------
    list of Path
        The PNG paths, in the order of :data:`PLOT_FILES`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    a, b, c, d = (out / f for f in PLOT_FILES)
    return [
        _accuracy(runs, a, "round", "round", "Test accuracy vs round"),
        _accuracy(runs, b, "sim_time_s", "simulated time (s)", "Test accuracy vs simulated time"),
        _energy(runs, c),
        _bits(runs, d),
    ]


def plot_metric(runs: Sequence[Run], key: str, out_dir: str | os.PathLike[str]) -> Path:
    """``metric_<key>.png``: any scalar of ``metrics.jsonl`` (a solver's queue, an orthogonality
    error, the round latency ...) against the round, one line per run; rounds without it are skipped."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = new_axes(key, "round", key)
    plotted = False
    for r in runs:
        xs, ys = r.series(key, x="round")
        if xs:
            ax.plot(xs, ys, marker=_marker(len(xs)), markersize=3, label=r.label)
            plotted = True
    return finish_plot(fig, ax, out / f"metric_{key}.png", plotted)
