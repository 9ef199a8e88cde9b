"""Write a Flower app folder for an airtune config (no flwr import).

The app is a FAB-ready folder: ``pyproject.toml`` (Flower's app metadata and the run config of
``settings.DEFAULTS``), ``airtune.yaml`` (the resolved airtune config) and two shims that build
the ServerApp and the ClientApp from :mod:`airtune.flower`. airtune itself must be installed
where the SuperLink and the SuperNodes run (runtime dependency installation stays off).
"""

from __future__ import annotations

import json
from pathlib import Path

from airtune import __version__
from airtune.config import Config, dump_resolved
from airtune.flower.settings import CONFIG_FILE, DEFAULTS

PACKAGE = "airtune_flower"
_SHIM = '''"""{what} of airtune on Flower (written by `airtune flower app`; see airtune/flower/{module}.py)."""

from pathlib import Path

from airtune.flower.{module} import {factory}

app = {factory}(Path(__file__).resolve().parents[1])
'''


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def write_app(app_dir: Path, cfg: Config, **run_config: object) -> Path:
    """Write the app for ``cfg`` into ``app_dir`` (created); ``run_config`` overrides the defaults
    of ``[tool.flwr.app.config]`` (keys with ``_`` spelled as in Python: ``quorum_timeout``)."""
    app_dir.mkdir(parents=True, exist_ok=True)
    values = dict(DEFAULTS)
    for key, value in run_config.items():
        name = key.replace("_", "-")
        if name not in values:
            raise KeyError(f"unknown run-config key {name!r}; known: {sorted(values)}")
        values[name] = str(value) if isinstance(value, Path) else value
    config_lines = "\n".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in values.items())
    (app_dir / "pyproject.toml").write_text(f'''# A Flower app running airtune {__version__} (written by `airtune flower app`).
[project]
name = "airtune-flower"
version = "{__version__}"
description = "airtune's federated LoRA experiment on Flower"
license = "Apache-2.0"
dependencies = ["flwr>=1.42,<1.43"]  # airtune {__version__} must be installed on every machine

[tool.flwr.app]
publisher = "airtune"

[tool.flwr.app.components]
serverapp = "{PACKAGE}.server_app:app"
clientapp = "{PACKAGE}.client_app:app"

[tool.flwr.app.config]
{config_lines}
''')
    pkg = app_dir / PACKAGE
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text('"""airtune on Flower: the app\'s shims."""\n')
    (pkg / "server_app.py").write_text(_SHIM.format(what="The ServerApp", module="server_app",
                                                    factory="make_server_app"))
    (pkg / "client_app.py").write_text(_SHIM.format(what="The ClientApp", module="client_app",
                                                    factory="make_client_app"))
    dump_resolved(cfg, app_dir / CONFIG_FILE)
    return app_dir
