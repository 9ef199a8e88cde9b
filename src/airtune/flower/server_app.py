"""The ServerApp: airtune's own round loop, with a :class:`GridEngine` in place of the local engine.

Run directory, records, checkpoints and ``resume`` behave as ``airtune run``: the ServerApp
writes to the absolute ``out`` of the run config, prepares it if empty (``airtune flower run``
prepares it before submitting), and continues it from its checkpoint with ``resume=true``.
Evaluation runs here, on the server's own copy of the model; the nodes only train.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from airtune.config import Config
from airtune.errors import ConfigError, ResumeError
from airtune.experiment import rundir
from airtune.experiment.setup import Setup
from airtune.flower.grid_engine import GridEngine
from airtune.flower.handshake import handshake
from airtune.flower.settings import AppSettings, load_app_config, read_settings

log = logging.getLogger("airtune")
TRAFFIC = "flower.json"   # in the run dir: what went through Flower (docs/flower.md cross-check)


def run_server(grid: Grid, run_config: dict[str, Any], app_dir: Path) -> dict[str, Any]:
    """Handshake, then the whole experiment over ``grid``; returns the run summary."""
    from airtune.experiment.validate import preflight

    settings = read_settings(run_config, app_dir)
    if settings.out is None:
        raise ConfigError("run config out is empty; fix: flwr run APP CONNECTION -c 'out=\"/abs/run/dir\"' "
                          "(or use `airtune flower run ... --out DIR`)")
    cfg, run_dir = load_app_config(settings), settings.out
    if settings.resume:
        cfg = rundir.resume_config(run_dir, cfg)
    elif (run_dir / rundir.CONFIG).exists():          # prepared by `airtune flower run`
        cfg = rundir.resume_config(run_dir, cfg)
        metrics = run_dir / rundir.METRICS
        if metrics.exists() and metrics.stat().st_size:
            raise ResumeError(f"out '{run_dir}' already holds a run; fix: -c 'resume=true' to continue it, "
                              "or another out")
    else:
        preflight(cfg)
        rundir.prepare(cfg, run_dir)
    handler = rundir.attach_log_file(run_dir)
    try:
        return _run(grid, cfg, settings, run_dir)
    finally:
        logging.getLogger("airtune").removeHandler(handler)
        handler.close()


def _run(grid: Grid, cfg: Config, settings: AppSettings, run_dir: Path) -> dict[str, Any]:
    from airtune.experiment.runner import make_engine, run_experiment

    log.info("flower: run %s in %s (resume=%s, placement %s)", cfg.name, run_dir, settings.resume,
             settings.placement)
    nodes = handshake(grid, cfg, settings)
    engines: list[GridEngine] = []

    def factory(setup: Setup) -> GridEngine:
        engines.append(GridEngine(make_engine(setup), grid, nodes, timeout=settings.timeout))
        return engines[-1]

    summary = run_experiment(cfg, run_dir, resume=settings.resume, engine_factory=factory)
    if engines:
        (run_dir / TRAFFIC).write_text(json.dumps({"placement": settings.placement, "nodes": len(set(nodes.values())),
                                                   **asdict(engines[0].traffic)}, indent=2) + "\n")
    return summary


def make_server_app(app_dir: Path) -> ServerApp:
    """The ServerApp of the app in ``app_dir`` (``app_files.write_app``)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_server(grid, dict(context.run_config), app_dir)

    return app
