"""`airtune run --resume` reproduces the metrics of an uninterrupted run exactly,
after a clean stop and after SIGKILL in the middle of a round."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airtune.cli import main
from airtune.config import load_config
from airtune.experiment import rundir
from airtune.experiment.runner import run_experiment
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.slow
VOLATILE = {"wall_time_s"}


def records(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


@pytest.fixture(scope="module")
def overrides(glue_dir):
    return tiny_overrides(glue_dir, rounds=4, eval_every=2, **{"wireless.interferer_density_per_m2": 2e-6})


@pytest.fixture(scope="module")
def reference_run(overrides, tmp_path_factory):
    """The uninterrupted run, as a user would start it under nohup: stdout is a pipe, not a terminal."""
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = subprocess.run([sys.executable, "-m", "airtune.cli", "run", "--out", str(out), *overrides],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc.stdout


@pytest.fixture(scope="module")
def reference(reference_run):
    return reference_run[0]


def test_non_terminal_run_prints_one_line_per_evaluated_round(reference_run):
    out, stdout = reference_run
    lines = [ln for ln in stdout.splitlines() if ln.startswith("round ")]
    evaluated = [r for r in records(out / "metrics.jsonl") if r["accuracy"] is not None]
    assert len(lines) == len(evaluated) == 2                       # rounds 2 and 4 (eval_every=2)
    for line, rec in zip(lines, evaluated):
        m = re.fullmatch(r"round (\d+)/4  accuracy ([0-9.]+)  sim_time ([0-9.]+) s  energy ([0-9.]+) J  "
                         r"wall ([0-9.]+) s", line)
        assert m, line
        assert int(m[1]) == rec["round"] + 1 and float(m[2]) == pytest.approx(rec["accuracy"], abs=5e-5)
        assert float(m[3]) == pytest.approx(rec["sim_time_s"], abs=0.05)
        assert float(m[4]) == pytest.approx(rec["cum_energy_j"], abs=0.005)
    assert "\x1b[" not in stdout                                   # no terminal control codes in a log


def test_reference_run_has_lost_updates(reference):
    # the interferer density above makes outage happen, so resume must reproduce the draws
    assert any(r["lost"] for r in records(reference / "metrics.jsonl"))


def test_resume_after_stop_equals_uninterrupted(reference, overrides, tmp_path):
    cfg = load_config(None, overrides)
    out = tmp_path / "run"
    rundir.prepare(cfg, out)
    run_experiment(cfg, out, stop_after_round=1)
    assert len(records(out / "metrics.jsonl")) == 2
    assert main(["run", "--quiet", "--resume", str(out)]) == 0
    for name in ("metrics.jsonl", "clients.jsonl"):
        assert records(out / name) == records(reference / name)


def test_resume_after_sigkill_mid_round_equals_uninterrupted(reference, overrides, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "airtune.cli", "run", "--quiet", "--out", str(out), *overrides]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 1:
            break
        time.sleep(0.05)
    time.sleep(0.5)  # well inside round 1 (each round trains for seconds)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(records(metrics))
    assert 1 <= done < 4
    assert main(["run", "--quiet", "--resume", str(out)]) == 0
    for name in ("metrics.jsonl", "clients.jsonl"):
        assert records(out / name) == records(reference / name)


def test_resume_with_a_different_config_is_refused(reference, overrides, capsys):
    before = (reference / "metrics.jsonl").read_bytes()
    code = main(["run", "--quiet", "--resume", str(reference), *overrides, "lora.rank=2"])
    err = capsys.readouterr().err
    assert code == 2 and "differs" in err and "fix:" in err and len(err.strip().splitlines()) == 1
    assert (reference / "metrics.jsonl").read_bytes() == before


@pytest.fixture
def stopped(overrides, tmp_path):
    """A run stopped after round 1: checkpoint/ holds round 1, checkpoint.old/ round 0."""
    cfg = load_config(None, overrides)
    out = tmp_path / "run"
    rundir.prepare(cfg, out)
    run_experiment(cfg, out, stop_after_round=1)
    return out


def _corrupt_state(folder: Path) -> None:
    state = folder / "state.json"
    state.write_bytes(state.read_bytes()[:100])


def test_resume_from_a_corrupt_checkpoint_is_a_one_line_error(stopped, capsys):
    _corrupt_state(stopped / "checkpoint")
    _corrupt_state(stopped / "checkpoint.old")
    before = (stopped / "metrics.jsonl").read_bytes()
    code = main(["run", "--quiet", "--resume", str(stopped)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert str(stopped / "checkpoint" / "state.json") in err and "fix:" in err
    assert (stopped / "metrics.jsonl").read_bytes() == before          # nothing written is lost


def test_resume_falls_back_to_the_previous_checkpoint(reference, stopped):
    _corrupt_state(stopped / "checkpoint")
    assert main(["run", "--quiet", "--resume", str(stopped)]) == 0
    for name in ("metrics.jsonl", "clients.jsonl"):
        assert records(stopped / name) == records(reference / name)
    assert "resuming from" in (stopped / "run.log").read_text() and "checkpoint.old (round 0)" in (
        stopped / "run.log").read_text()


def test_resume_refuses_an_edited_run_config(stopped, capsys):
    path = stopped / rundir.CONFIG
    path.write_text(path.read_text().replace("rounds: 4", "rounds: 5"))
    assert "rounds: 5" in path.read_text()
    code = main(["run", "--quiet", "--resume", str(stopped)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "config hash" in err and "fix:" in err


def test_every_upload_of_a_default_run_is_charged_a_rate_decodable_in_its_delivery_event(reference):
    rows = [r for r in records(reference / "clients.jsonl") if r["selected"]]
    assert rows and any(not r["delivered"] for r in rows)
    for r in rows:
        decodable = r["rate_bps"] <= r["capacity_bps"] * (1 + 1e-9)
        assert r["delivered"] == decodable, r
        assert r["rate_bps"] == pytest.approx(r["bandwidth_hz"] * 1.0)   # fixed rate b log2(1 + theta), theta = 0 dB
