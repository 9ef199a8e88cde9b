"""Run a sweep: every (scheme, grid point, seed) in its own run directory, in parallel worker
processes or through submitit (SLURM, or its local executor), resumably.

Layout of ``OUT/``: ``manifest.json`` (every run: scheme, grid point, seed, overrides, status,
error, summary), ``runs/<run_id>/`` (ordinary run directories, ``airtune report`` reads them),
``submitit/`` (submitit's job files, when used).

Resume: a run whose ``summary.json`` exists is skipped; a run directory without one (a killed
sweep) is continued from its checkpoint (``airtune run --resume`` semantics: exact, and refused if
its config differs); a failed run is retried. So a sweep can be stopped and restarted, and
seeds or schemes added to the spec later accumulate in the same folder.
A run that fails is recorded with its one-line error and does not stop the others; the command
then exits non-zero.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from airtune.errors import ConfigError
from airtune.sweep.spec import RunSpec, expand, load_spec

__all__ = ["EXECUTORS", "MANIFEST", "run_one", "run_sweep"]

MANIFEST = "manifest.json"
EXECUTORS = ("processes", "submitit-local", "slurm")
log = logging.getLogger("airtune")


def run_one(run_dir: str, config: dict[str, Any], threads: int) -> dict[str, Any]:
    """Run (or continue) one run in a worker process; never raises: failures come back as data."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        from airtune.config import Config
        from airtune.experiment import rundir
        from airtune.experiment.runner import run_experiment
        from airtune.experiment.validate import preflight

        cfg, path = Config.model_validate(config), Path(run_dir)
        if (path / rundir.SUMMARY).exists():
            return {"status": "done", "summary": json.loads((path / rundir.SUMMARY).read_text())}
        resume = (path / rundir.CONFIG).exists()
        if resume:
            cfg = rundir.resume_config(path, cfg)
        else:
            preflight(cfg)
            rundir.prepare(cfg, path)
        handler = rundir.attach_log_file(path)
        logging.getLogger("airtune").info("sweep run %s in %s (resume=%s)", cfg.name, path, resume)
        try:
            summary = run_experiment(cfg, path, resume=resume)
        finally:
            logging.getLogger("airtune").removeHandler(handler)
            handler.close()
        return {"status": "done", "summary": summary, "resumed": resume}
    except Exception as exc:  # noqa: BLE001 - a failed run is recorded, the sweep goes on
        first = (str(exc).splitlines() or [""])[0]
        return {"status": "failed", "error": f"{exc.__class__.__name__}: {first}"}


def run_sweep(spec_path: str | Path, out: str | Path | None = None, *, workers: int | None = None,
              executor: str = "processes", slurm: dict[str, Any] | None = None,
              on_update: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run every pending run of the spec; return the manifest (also written to ``OUT/manifest.json``)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor = '{executor}': unknown; fix: choose one of {', '.join(EXECUTORS)}")
    spec, base = load_spec(spec_path)
    runs = expand(spec, base)
    out = Path(out) if out is not None else Path("sweeps") / spec.name
    (out / "runs").mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(out) or {"name": spec.name, "runs": {}}
    manifest["spec"] = str(Path(spec_path).resolve())
    for r in runs:
        entry = manifest["runs"].setdefault(r.run_id, {})
        entry.update({"scheme": r.scheme, "point": r.point, "seed": r.seed, "overrides": r.overrides,
                      "run_dir": f"runs/{r.run_id}"})
        if (out / entry["run_dir"] / "summary.json").exists():
            entry["status"] = "done"
        elif entry.get("status") != "failed":
            entry["status"] = "pending"
    _write_manifest(out, manifest)
    todo = [r for r in runs if manifest["runs"][r.run_id]["status"] != "done"]
    if todo:
        log.info("sweep %s: %d of %d runs to do (%s)", spec.name, len(todo), len(runs), executor)

    def record(r: RunSpec, result: dict[str, Any]) -> None:
        entry = manifest["runs"][r.run_id]
        entry["status"] = result["status"]
        entry.pop("error", None)
        if result["status"] == "failed":
            entry["error"] = result["error"]
        else:
            entry["summary"] = result.get("summary")
            entry["resumed"] = bool(result.get("resumed", False))
        entry["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        _write_manifest(out, manifest)
        if on_update is not None:
            on_update(r.run_id, entry)

    jobs = [(str(out / "runs" / r.run_id), r.config, spec.threads_per_worker) for r in todo]
    if executor == "processes":
        _run_processes(todo, jobs, workers or spec.workers, record)
    else:
        _run_submitit(todo, jobs, out, "local" if executor == "submitit-local" else "slurm", slurm or {},
                      workers or spec.workers, record)
    return manifest


def _run_processes(todo, jobs, workers: int, record) -> None:
    if workers == 1:
        for r, job in zip(todo, jobs):
            record(r, run_one(*job))
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_one, *job): r for r, job in zip(todo, jobs)}
        for fut in as_completed(futures):
            record(futures[fut], fut.result())


def _run_submitit(todo, jobs, out: Path, cluster: str, slurm: dict[str, Any], workers: int, record) -> None:
    try:
        import submitit
    except ImportError as exc:
        raise ConfigError("--executor submitit-local/slurm needs submitit; fix: pip install submitit") from exc
    ex = submitit.AutoExecutor(folder=str(out / "submitit"), cluster=cluster)
    params: dict[str, Any] = {"timeout_min": int(slurm.pop("timeout_min", 24 * 60))}
    if cluster == "slurm":
        params.update({f"slurm_{k}": v for k, v in slurm.items()})
        params.setdefault("slurm_array_parallelism", workers)
    ex.update_parameters(**params)
    submitted = [(r, ex.submit(run_one, *job)) for r, job in zip(todo, jobs)]
    for r, job in submitted:
        try:
            result = job.result()
        except Exception as exc:  # noqa: BLE001 - a job the scheduler killed
            result = {"status": "failed", "error": f"{exc.__class__.__name__}: {(str(exc).splitlines() or [''])[0]}"}
        record(r, result)


def _read_manifest(out: Path) -> dict[str, Any] | None:
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON; fix: restore it or move the folder away") from exc


def _write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    from airtune.metrics.records import to_jsonable

    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(manifest), indent=1) + "\n")
    os.replace(tmp, out / MANIFEST)
