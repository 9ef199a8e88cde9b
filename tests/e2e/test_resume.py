"""`airtune run --resume` reproduces the metrics of an uninterrupted run exactly,
after a clean stop and after SIGKILL in the middle of a round."""

from __future__ import annotations

import json
import os
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
def reference(overrides, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    assert main(["run", "--quiet", "--out", str(out), *overrides]) == 0
    return out


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
