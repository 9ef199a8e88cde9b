"""airtune.report: figures and a comparison table from run directories.

Reads only the files in run directories (``metrics.jsonl``, ``config.resolved.yaml``,
``summary.json``); never imports training code or torch.

Public API::

    make_report(run_dirs, out_dir, target_accuracy=None, metrics=(), sweep=None, series="strategy.name") -> dict
    load_run(dir) -> Run, load_runs(dirs) -> list[Run], Run
    comparison_table(runs, target_accuracy=None) -> str, run_stats(run, target_accuracy=None) -> dict
    plot_runs(runs, out_dir) -> list[Path]   (in airtune.report.plots; imports matplotlib)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from airtune.errors import DataError
from airtune.report.runs import Run, load_run, load_runs
from airtune.report.tables import comparison_table, run_stats

__all__ = ["make_report", "load_run", "load_runs", "Run", "comparison_table", "run_stats"]


def _report_md(runs: list[Run], table: str, plots: list[Path], out: Path, sweep_md: str = "") -> str:
    lines = ["# airtune report", "", table] + ([sweep_md] if sweep_md else []) + ["## Runs", ""]
    for r in runs:
        lines.append(f"- **{r.label}**: `{r.path.resolve()}`")
    lines.append("")
    lines.append("## Figures")
    lines.append("")
    for p in plots:
        rel = os.path.relpath(p, out).replace(os.sep, "/")
        lines += [f"![{p.stem}]({rel})", ""]
    return "\n".join(lines)


def make_report(
    run_dirs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    target_accuracy: float | None = None,
    metrics: Iterable[str] = (),
    sweep: str | None = None,
    series: str = "strategy.name",
) -> dict[str, Any]:
    """Load ``run_dirs``, write the PNG figures and ``report.md`` into ``out_dir``.

    ``out_dir`` is created if needed; only ``report.md`` and the figure files
    (:data:`airtune.report.plots.PLOT_FILES`) are (over)written there, nothing is deleted.

    Parameters
    ----------
    run_dirs : iterable of path
        Directories written by ``airtune run --out``, in the order the table lists them.
    out_dir : path
        Where the report goes.
    target_accuracy : float, optional
        Adds a "rounds to reach this accuracy" column to the table.
    metrics : iterable of str
        Further ``metrics.jsonl`` keys to plot against the round (``metric_<key>.png`` each).
    sweep : str, optional
        Dotted config key (e.g. ``num_devices``): adds rounds and simulated time to
        ``target_accuracy`` against it, one line per value of ``series``
        (:mod:`airtune.report.sweep`; ``sweep_<key>_rounds.png``, ``sweep_<key>_time.png``).
    series : str, default "strategy.name"
        Dotted config key that groups the runs of a sweep into lines.

    Returns
    -------
    dict
        ``{"report": Path to report.md, "plots": [PNG paths], "table": markdown str,
        "runs": [labels]}``.

    Raises
    ------
    DataError (an :class:`airtune.errors.AirtuneError`)
        No run directory given, or one has no ``metrics.jsonl``; ``sweep`` without
        ``target_accuracy``, or a run without the ``sweep`` / ``series`` key.
    """
    dirs = list(run_dirs)
    if not dirs:
        raise DataError("no RUN_DIR given; fix: pass one or more directories written by `airtune run --out`")
    if sweep is not None and target_accuracy is None:
        raise DataError(f"--sweep {sweep} needs a target; fix: add --target-accuracy, e.g. 0.75")
    runs = load_runs(dirs)
    from airtune.report.plots import plot_metric, plot_runs  # matplotlib only when a report is made

    sweep_md, points = "", []
    if sweep is not None:
        from airtune.report.sweep import plot_sweep, sweep_points, sweep_table

        points = sweep_points(runs, sweep, series, target_accuracy)  # validates keys before writing
        sweep_md = sweep_table(points, sweep, series, target_accuracy)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = plot_runs(runs, out) + [plot_metric(runs, key, out) for key in metrics]
    if sweep is not None:
        plots += plot_sweep(points, sweep, target_accuracy, out)
    table = comparison_table(runs, target_accuracy)
    report = out / "report.md"
    report.write_text(_report_md(runs, table, plots, out, sweep_md), encoding="utf-8")
    return {"report": report, "plots": plots, "table": table, "runs": [r.label for r in runs]}
