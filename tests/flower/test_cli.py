"""``airtune flower app | run`` without Flower processes: the app folder, one-line errors, and a
failed run surfaced as a non-zero exit (``flwr run`` alone exits 0)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from airtune.cli import main
from airtune.config import config_hash, load_config
from airtune.flower import submit
from airtune.flower.settings import load_app_config, read_settings

SRC = Path(__file__).resolve().parents[2] / "src" / "airtune"


def test_only_airtune_flower_imports_flwr():
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if "flower" not in p.relative_to(SRC).parts
                 and re.search(r"^\s*(from|import)\s+flwr\b", p.read_text(), re.M)]
    assert offenders == []
    code = "import sys, airtune.cli; airtune.cli.build_parser(); assert 'flwr' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_app_folder_holds_the_same_config(tmp_path, capsys):
    pytest.importorskip("tomllib")
    import tomllib

    app = tmp_path / "app"
    assert main(["flower", "app", str(app), "rounds=3", "lora.rank=4", "--placement", "device-per-node"]) == 0
    meta = tomllib.loads((app / "pyproject.toml").read_text())
    assert meta["tool"]["flwr"]["app"]["components"] == {"serverapp": "airtune_flower.server_app:app",
                                                          "clientapp": "airtune_flower.client_app:app"}
    assert meta["tool"]["flwr"]["app"]["config"]["placement"] == "device-per-node"
    settings = read_settings(meta["tool"]["flwr"]["app"]["config"], app)
    assert config_hash(load_app_config(settings)) == config_hash(load_config(None, ["rounds=3", "lora.rank=4"]))
    assert (app / "airtune_flower" / "client_app.py").exists()
    assert main(["flower", "app", str(app)]) == 2                      # never overwrites
    assert "already holds files" in capsys.readouterr().err


@pytest.mark.parametrize("argv, needle", [
    (["flower", "run", "rounds=1", "--superlink", "host:port"], "--superlink 'host:port'"),
    (["flower", "run", "rounds=0", "--superlink", "127.0.0.1:9"], "rounds = 0"),
    (["flower", "run", "rounds=1", "--superlink", "127.0.0.1:9", "--quorum-timeout", "-1"], "--quorum-timeout"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "fix:" in err[0]
    assert not (tmp_path / "run").exists()                             # nothing written before the checks


def test_run_config_errors_name_key_value_fix(tmp_path):
    from airtune.errors import ConfigError

    for rc, needle in [({"out": "rel/dir"}, "out = 'rel/dir'"), ({"timeout": "soon"}, "timeout = 'soon'"),
                       ({"resume": "maybe"}, "resume = 'maybe'"), ({"placement": "x"}, "placement = 'x'")]:
        with pytest.raises(ConfigError, match="fix:") as exc:
            read_settings(rc, tmp_path)
        assert needle in str(exc.value)


def test_failed_run_is_an_error_with_the_runs_own_reason(monkeypatch, tmp_path):
    states = iter(["pending", "running", "finished:failed"])

    def fake_flwr(cmd, env):
        return {"success": True, "runs": [{"run-id": "7", "status": next(states),
                                          "status-details": "ServerApp failed with exception: boom"}]}

    monkeypatch.setattr(submit, "_flwr", fake_flwr)
    monkeypatch.setattr(submit, "flwr_executable", lambda: "flwr")
    seen: list[str] = []
    with pytest.raises(submit.FlowerRunError, match="finished:failed: ServerApp failed with exception: boom"):
        submit.follow("7", "c", {}, tmp_path, submit.Submission("c", poll_s=0), echo=seen.append)
    assert seen == ["flower run 7: pending", "flower run 7: running", "flower run 7: finished:failed"]
    assert (tmp_path / "flower" / submit.STATUS).exists()


def test_pending_forever_times_out(monkeypatch, tmp_path):
    monkeypatch.setattr(submit, "_flwr", lambda cmd, env: {"success": True, "runs": [{"status": "pending"}]})
    monkeypatch.setattr(submit, "flwr_executable", lambda: "flwr")
    with pytest.raises(submit.FlowerRunError, match="still pending"):
        submit.follow("7", "c", {}, tmp_path, submit.Submission("c", pending_timeout=0.01, poll_s=0.02),
                      echo=lambda s: None)
