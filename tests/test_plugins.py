"""A third-party package adds a strategy, a planner, a partitioner and a fading model through the
``airtune.plugins`` entry point (docs/extending.md): the example package is pip-installed into a
folder, and airtune, run with that folder on its path, lists and runs them end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, tiny_overrides

EXAMPLE = ROOT / "examples" / "airtune_plugin_example"
NAMES = ("example_uniform_fedit", "example_half_band", "example_round_robin", "example_nakagami2")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(EXAMPLE)], check=True, capture_output=True, timeout=300)
    assert list(target.glob("airtune_plugin_example-*.dist-info/entry_points.txt"))
    return target


def airtune(site: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "airtune.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_installed_plugin_components_are_listed(site):
    out = airtune(site, "ls")
    assert out.returncode == 0, out.stderr
    for name in NAMES:
        assert name in out.stdout


@pytest.mark.slow
def test_installed_plugin_runs_end_to_end(site, glue_dir, tmp_path):
    run = tmp_path / "run"
    args = tiny_overrides(glue_dir, rounds=2, **{"strategy.name": "example_uniform_fedit",
                                                 "allocation.name": "example_half_band",
                                                 "data.partition": "example_round_robin",
                                                 "wireless.fading": "example_nakagami2",
                                                 "wireless.link": "error_free"})
    out = airtune(site, "run", "--quiet", "--out", str(run), *args)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in (run / "clients.jsonl").read_text().splitlines()]
    sel = [r for r in rows if r["selected"]]
    per_round = {r["round"]: sum(1 for x in sel if x["round"] == r["round"]) for r in sel}
    # half of an equal share of the 10 MHz band for each scheduled device
    assert all(r["bandwidth_hz"] == pytest.approx(10e6 / per_round[r["round"]] / 2) for r in sel)
    sizes = {r["num_samples"] for r in rows if r["selected"]}
    assert sizes and all(s > 0 for s in sizes)
    assert json.loads((run / "summary.json").read_text())["final_accuracy"] is not None
    assert "example_round_robin" in (run / "run.log").read_text()


def test_a_broken_plugin_is_a_one_line_error(tmp_path):
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[airtune.plugins]\nbroken = no_such_module_xyz:register\n")
    out = airtune(tmp_path, "validate")
    err = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(err) == 1, out.stderr
    assert "plugin 'broken'" in err[0] and "no_such_module_xyz" in err[0] and "fix:" in err[0]
