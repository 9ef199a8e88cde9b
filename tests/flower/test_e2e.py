"""Real Flower processes: a SuperLink and two SuperNodes on 127.0.0.1 (tests/flower/cluster.py).

``airtune flower run`` completes a one-round experiment and writes the same records as the
in-process runner; killing one SuperNode in the middle of a run loses that node's devices'
updates, and the run finishes; SIGKILL of the ServerApp, then ``--resume``, continues the run to
the records of an uninterrupted one. About 2, 3 and 3.5 minutes on a shared 2-core machine
(Flower polls every 3 s and starts a process per message, each of which builds the model).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airtune.config import load_config
from airtune.experiment import rundir
from airtune.experiment.runner import run_experiment
from tests.conftest import tiny_overrides
from tests.flower.cluster import FlowerCluster

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("flwr") is None, reason="flwr not installed")]
VOLATILE = {"wall_time_s"}
NODES = ["airtune-devices='0-1'", "airtune-devices='2-3'"]


def records(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def _overrides(glue_dir, **extra) -> list[str]:
    return tiny_overrides(glue_dir, **{"rounds": 1, "devices_per_round": 4, "train.num_threads": 1, **extra})


def _env(tmp_path) -> dict[str, str]:
    return {"AIRTUNE_CACHE_DIR": os.environ.get("AIRTUNE_CACHE_DIR", str(tmp_path / "cache")),
            "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _flower_run(cluster: FlowerCluster, overrides: list[str], out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "airtune.cli", "flower", "run", *overrides, "--superlink", cluster.address,
           "--out", str(out), "--quorum-timeout", "120", *extra]
    return subprocess.Popen(cmd, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_flower_run_equals_in_process(glue_dir, tmp_path):
    overrides = _overrides(glue_dir)
    ref = tmp_path / "ref"
    cfg = load_config(None, overrides)
    rundir.prepare(cfg, ref)
    run_experiment(cfg, ref)
    with FlowerCluster(tmp_path / "flower", NODES, _env(tmp_path)) as cluster:
        t0 = time.monotonic()
        proc = _flower_run(cluster, overrides, tmp_path / "run", "--timeout", "300")
        out, _ = proc.communicate(timeout=480)
        wall = time.monotonic() - t0
        assert proc.returncode == 0, out[-3000:] + cluster.log("superlink")[-3000:]
    assert "finished:completed" in out
    for name in (rundir.METRICS, rundir.CLIENTS):
        assert records(tmp_path / "run" / name) == records(ref / name), name
    status = json.loads((tmp_path / "run" / "flower" / "flower-run.json").read_text())
    traffic = json.loads((tmp_path / "run" / "flower.json").read_text())
    assert status["network-traffic"]["total-bytes"] > traffic["down_array_bytes"] + traffic["up_array_bytes"]
    print(f"flower e2e: {wall:.0f} s wall; flwr list {status['network-traffic']}; airtune {traffic}")


def test_killed_supernode_loses_its_devices_and_the_run_finishes(glue_dir, tmp_path):
    overrides = _overrides(glue_dir, rounds=2, eval_every=2)
    run = tmp_path / "run"
    with FlowerCluster(tmp_path / "flower", NODES, _env(tmp_path)) as cluster:
        proc = _flower_run(cluster, overrides, run, "--timeout", "90")
        deadline = time.monotonic() + 420
        metrics = run / rundir.METRICS
        while not (metrics.exists() and metrics.read_text().strip()):   # round 0 is done
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
            time.sleep(1)
        cluster.kill("supernode1")                                       # hosts devices 2 and 3
        out, _ = proc.communicate(timeout=480)
        assert proc.returncode == 0, out[-3000:]
    rows = records(metrics)
    assert len(rows) == 2
    assert set(rows[1]["lost"]) >= {2, 3} and not {2, 3} & set(rows[1]["delivered"])
    assert rows[1]["accuracy"] is not None
    log = (run / rundir.LOG).read_text()
    assert "no update from devices [2, 3]" in log


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Flower's simulation runtime needs ray "
                    "(pip install 'flwr[simulation]'); not installed here")
def test_simulation_runtime_equals_in_process(glue_dir, tmp_path):
    """The same command on a ``--simulation`` SuperLink: two virtual nodes, shards by partition id."""
    overrides = _overrides(glue_dir)
    ref = tmp_path / "ref"
    cfg = load_config(None, overrides)
    rundir.prepare(cfg, ref)
    run_experiment(cfg, ref)
    with FlowerCluster(tmp_path / "flower", [], _env(tmp_path), simulation=True) as cluster:
        proc = _flower_run(cluster, overrides, tmp_path / "run", "--federation-config",
                           "num-supernodes=2 client-resources-num-cpus=1")
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:] + cluster.log("superlink")[-3000:]
    for name in (rundir.METRICS, rundir.CLIENTS):
        assert records(tmp_path / "run" / name) == records(ref / name), name


def test_sigkill_of_the_serverapp_then_resume_continues_the_run(glue_dir, tmp_path):
    overrides = _overrides(glue_dir, rounds=2, eval_every=1)
    ref = tmp_path / "ref"
    cfg = load_config(None, overrides)
    rundir.prepare(cfg, ref)
    run_experiment(cfg, ref)
    run = tmp_path / "run"
    with FlowerCluster(tmp_path / "flower", NODES, _env(tmp_path)) as cluster:
        proc = _flower_run(cluster, overrides, run, "--timeout", "300")
        deadline = time.monotonic() + 420
        metrics = run / rundir.METRICS
        while not (metrics.exists() and metrics.read_text().strip()):   # round 0 checkpointed
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
            time.sleep(0.5)
        pids = cluster.own_pids("flwr-serverapp")
        assert pids, "no flwr-serverapp process of this cluster"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=300)                          # the follower reports the failure
        assert proc.returncode == 1 and "finished:failed" in out, out[-3000:]
        resumed = subprocess.run([sys.executable, "-m", "airtune.cli", "flower", "run", "--resume", str(run),
                                  "--superlink", cluster.address, "--timeout", "300"], env=cluster.env,
                                 capture_output=True, text=True, timeout=480)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    for name in (rundir.METRICS, rundir.CLIENTS):
        assert records(run / name) == records(ref / name), name
