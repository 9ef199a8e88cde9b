"""``airtune flower run``: write the app, submit it with ``flwr run``, follow it to the end.

``flwr run`` exits 0 as soon as a run is *submitted*, also when the run then fails; this
follows the run with ``flwr list CONNECTION --run-id ID --format json`` until its status is
``finished:*`` and raises :class:`FlowerRunError` (the CLI exits 1) with the run's own
``status-details`` unless it is ``finished:completed``. A run still ``pending`` after
``pending_timeout`` seconds (flwrlabs/flower #7953) is an error too. No flwr import: this
module drives Flower's own CLI, as a user would.

``superlink`` is either ``HOST:PORT`` (an insecure SuperLink: a private Flower configuration is
written to ``RUN_DIR/flower/home``, so the user's ``~/.flwr`` is left alone) or the name of a
connection in the user's Flower configuration (TLS, accounts: ``flwr config list``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airtune.config import Config
from airtune.errors import AirtuneError, ConfigError
from airtune.flower.app_files import write_app

CONNECTION = "airtune"        # the connection name in the private Flower configuration
STATUS = "flower-run.json"    # in RUN_DIR/flower: the last `flwr list` record (traffic, times)


class FlowerRunError(AirtuneError):
    """The Flower run could not be submitted, or it did not finish as ``finished:completed``."""


@dataclass(frozen=True)
class Submission:
    superlink: str
    placement: str = "shard-per-node"
    timeout: float = 600.0
    quorum_timeout: float = 120.0
    federation_config: str | None = None   # simulation runtime (Ray): "num-supernodes=4 ..."
    pending_timeout: float = 300.0
    poll_s: float = 2.0


def flwr_executable() -> str:
    """The ``flwr`` next to this Python (the venv's), else the one on PATH."""
    here = Path(sys.executable).parent / "flwr"
    found = str(here) if here.exists() else shutil.which("flwr")
    if not found:
        raise ConfigError("the flwr command is not installed; fix: pip install 'airtune[flower]'")
    return found


def check_superlink(superlink: str) -> bool:
    """True for ``HOST:PORT``, False for a connection name; one-line error otherwise."""
    host, sep, port = superlink.rpartition(":")
    if sep and (not host or not port.isdigit()) or not superlink.strip():
        raise ConfigError(f"--superlink {superlink!r} is not HOST:PORT nor a connection name; "
                          "fix: e.g. --superlink 127.0.0.1:9093")
    return bool(sep)


def connection(superlink: str, home: Path) -> tuple[str, dict[str, str]]:
    """``(connection name, environment)`` for the ``flwr`` CLI."""
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": os.environ.get("FLWR_TELEMETRY_ENABLED", "0")}
    if not check_superlink(superlink):
        return superlink, env                       # a named connection of the user's configuration
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
                                      f'address = "{superlink}"\ninsecure = true\n')
    return CONNECTION, {**env, "FLWR_HOME": str(home)}


def submit_and_follow(cfg: Config, run_dir: Path, sub: Submission, *, resume: bool = False,
                      echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the app into ``RUN_DIR/flower/app``, submit it, wait for the end; the final run record."""
    run_dir = run_dir.resolve()
    app_dir = write_app(run_dir / "flower" / "app", cfg, out=run_dir, resume=resume, placement=sub.placement,
                        timeout=float(sub.timeout), quorum_timeout=float(sub.quorum_timeout))
    conn, env = connection(sub.superlink, run_dir / "flower" / "home")
    cmd = [flwr_executable(), "run", str(app_dir), conn, "--format", "json"]
    if sub.federation_config:
        cmd += ["--federation-config", sub.federation_config]
    res = _flwr(cmd, env)
    run_id = res.get("run-id")
    if not res.get("success") or not run_id:
        raise FlowerRunError(f"flwr run did not start a run on {sub.superlink}: {_oneline(res)}; fix: check that a "
                             "SuperLink listens there (flower-superlink --insecure) and `flwr run` works")
    echo(f"flower run {run_id} submitted to {sub.superlink}; run directory {run_dir}")
    return follow(run_id, conn, env, run_dir, sub, echo=echo)


def follow(run_id: str, conn: str, env: dict[str, str], run_dir: Path, sub: Submission, *,
           echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Poll ``flwr list --run-id`` until ``finished:*``; raise unless ``finished:completed``."""
    started, last = time.monotonic(), None
    while True:
        res = _flwr([flwr_executable(), "list", conn, "--run-id", str(run_id), "--format", "json"], env)
        runs = res.get("runs") or []
        if not res.get("success") or not runs:
            raise FlowerRunError(f"flwr list lost run {run_id}: {_oneline(res)}")
        run = runs[0]
        status = str(run.get("status", ""))
        if status != last:
            echo(f"flower run {run_id}: {status}")
            last = status
        if status.startswith("finished"):
            (run_dir / "flower").mkdir(parents=True, exist_ok=True)
            (run_dir / "flower" / STATUS).write_text(json.dumps(run, indent=2) + "\n")
            if status != "finished:completed":
                raise FlowerRunError(f"flower run {run_id} {status}: {run.get('status-details') or 'no details'}; "
                                     f"see {run_dir / 'run.log'} and `flwr log {run_id} {conn}`")
            return run
        if status.startswith("pending") and time.monotonic() - started > sub.pending_timeout:
            raise FlowerRunError(f"flower run {run_id} still pending after {sub.pending_timeout:g} s; fix: check the "
                                 "SuperLink's log, then `flwr stop` it")
        time.sleep(sub.poll_s)


def _flwr(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    text = proc.stdout.strip()
    start = text.find("{")
    try:
        return json.loads(text[start:]) if start >= 0 else {"success": False, "error-message": text}
    except json.JSONDecodeError:
        return {"success": False, "error-message": (text or proc.stderr.strip())[-500:]}


def _oneline(res: dict[str, Any]) -> str:
    msg = res.get("error-message") or res.get("error") or json.dumps(res)
    return " ".join(str(msg).split())[:500]
