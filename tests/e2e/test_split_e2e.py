"""Split federated LoRA from the CLI on real SST-2: it learns under the Lyapunov allocator, and a
run stopped after a round resumes to exactly the uninterrupted metrics (planner queues included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airtune.cli import main
from airtune.config import load_config
from airtune.experiment import rundir
from airtune.experiment.runner import run_experiment
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.slow
LYAP = "allocation.options={energy_budget_j: 0.01, V: 0.05, deadline_s: 5.0, max_devices: 2}"


def records(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in rows]


def test_split_fedlora_learns(glue_dir, tmp_path):
    args = tiny_overrides(glue_dir, **{"data.partition": "iid", "data.train_subset": 1200, "rounds": 3,
                                       "eval_every": 3, "train.local_steps": 8, "train.batch_size": 16,
                                       "train.lr": 3e-3, "train.head_lr": 2e-2, "wireless.link": "error_free",
                                       "strategy.name": "split_fedlora"})
    out = tmp_path / "run"
    assert main(["run", "--quiet", "--out", str(out), *args]) == 0
    summary = json.loads((out / "summary.json").read_text())
    # 200 balanced test sentences: chance is 0.5; 0.70 is far outside its sampling noise (sd 0.035).
    assert summary["final_accuracy"] >= 0.70, summary
    metrics = records(out / "metrics.jsonl")
    # the activation traffic is on the air: far more than the 770-value head each way
    assert all(m["split_uplink_bits"] > 100 * 770 * 32 and m["uplink_bits"] > m["split_uplink_bits"]
               for m in metrics)


def test_split_fedlora_with_lyapunov_resumes_exactly(glue_dir, tmp_path):
    args = tiny_overrides(glue_dir, **{"strategy.name": "split_fedlora", "allocation.name": "lyapunov",
                                       "train.local_steps": 2, "wireless.link": "error_free"})
    args.append(LYAP)
    ref = tmp_path / "ref"
    assert main(["run", "--quiet", "--out", str(ref), *args]) == 0
    assert any(m["lyap_queue_max_j"] > 0 for m in records(ref / "metrics.jsonl"))   # queues move
    cfg = load_config(None, args)
    out = tmp_path / "resumed"
    rundir.prepare(cfg, out)
    run_experiment(cfg, out, stop_after_round=0)
    assert main(["run", "--quiet", "--resume", str(out)]) == 0
    for name in ("metrics.jsonl", "clients.jsonl"):
        assert records(out / name) == records(ref / name)
