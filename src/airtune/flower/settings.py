"""The Flower app's run config (``[tool.flwr.app.config]``) read into airtune terms (no flwr import).

``flwr run --run-config`` may only override keys the app declares, so airtune's own dotted
overrides travel in one string key, ``airtune-overrides``, and go through airtune's config
loader (one-line errors as ``airtune run``).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from airtune.config import Config, load_config
from airtune.errors import ConfigError
from airtune.flower.placement import check_placement

CONFIG_FILE = "airtune.yaml"          # the resolved airtune config, shipped inside the FAB
DEFAULTS: dict[str, object] = {
    "airtune-config": CONFIG_FILE,    # relative to the app folder, or absolute
    "airtune-overrides": "",          # "rounds=3 lora.rank=4"
    "out": "",                        # absolute run directory (on the ServerApp's machine)
    "resume": False,                  # continue the run in `out` from its last checkpoint
    "placement": "shard-per-node",    # or device-per-node (airtune/flower/placement.py)
    "timeout": 600.0,                 # seconds a round waits for the nodes' replies
    "quorum-timeout": 120.0,          # seconds the handshake waits until every device has a node
}


@dataclass(frozen=True)
class AppSettings:
    """What the ServerApp and the ClientApp read from the run config."""

    config_path: Path
    overrides: tuple[str, ...]
    out: Path | None
    resume: bool
    placement: str
    timeout: float
    quorum_timeout: float


def read_settings(run_config: Mapping[str, object], app_dir: Path) -> AppSettings:
    """Validate the run config; every problem is one line naming key, value and fix."""
    rc = {**DEFAULTS, **dict(run_config)}
    path = Path(str(rc["airtune-config"]))
    path = path if path.is_absolute() else app_dir / path
    out = str(rc["out"]).strip()
    if out and not Path(out).is_absolute():
        raise ConfigError(f"run config out = {out!r} is not an absolute path; fix: -c 'out=\"/abs/run/dir\"' "
                          "(the ServerApp runs in another working directory)")
    timeouts = {}
    for key in ("timeout", "quorum-timeout"):
        try:
            timeouts[key] = float(rc[key])  # type: ignore[arg-type]
        except (TypeError, ValueError):
            timeouts[key] = -1.0
        if not timeouts[key] > 0:
            raise ConfigError(f"run config {key} = {rc[key]!r} is not a positive number of seconds; fix: e.g. "
                              f"-c '{key}=600'")
    return AppSettings(path, tuple(shlex.split(str(rc["airtune-overrides"]))), Path(out) if out else None,
                       _as_bool(rc["resume"], "resume"), check_placement(str(rc["placement"])),
                       timeouts["timeout"], timeouts["quorum-timeout"])


def load_app_config(settings: AppSettings) -> Config:
    """The airtune config of the run: the app's YAML plus ``airtune-overrides``, validated."""
    from airtune.experiment.validate import check

    if not settings.config_path.exists():
        raise ConfigError(f"run config airtune-config = '{settings.config_path}' does not exist; fix: write the app "
                          "with `airtune flower app DIR CONFIG`")
    cfg = load_config(settings.config_path, list(settings.overrides))
    check(cfg)
    return cfg


def _as_bool(value: object, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise ConfigError(f"run config {key} = {value!r} is not a boolean; fix: -c '{key}=true' or '{key}=false'")
