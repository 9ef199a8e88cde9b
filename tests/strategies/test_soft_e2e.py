"""SOFT + TSFA with error feedback, from the CLI on real data: payloads, latency plan, exact resume.

The resumed run must reproduce the uninterrupted one exactly, which needs the TSFA queue
(planner state) and the error-feedback residuals (``server.extra``) to survive the checkpoint.
"""

from __future__ import annotations

import json

import pytest
import torch

from airtune.cli import main

pytestmark = pytest.mark.slow

D, LAYERS, R = 384, 12, 8
HEAD_BITS = 32 * (2 * D + 2)


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_soft_tsfa_error_feedback_runs_and_resumes_exactly(glue_dir, tmp_path):
    from airtune.config import load_config
    from airtune.experiment import rundir
    from airtune.experiment.runner import run_experiment

    before = torch.get_num_threads()
    overrides = ["rounds=3", "eval_every=3", "num_devices=4", "devices_per_round=2", "data.train_subset=400",
                 "data.test_subset=100", "train.local_steps=2", "strategy.name=soft",
                 "strategy.options.error_feedback=true", "allocation.name=tsfa",
                 "allocation.options.latency_budget_s=0.3", "allocation.options.stage1_samples=16",
                 "allocation.options.rank_policy=report",
                 "wireless.uplink_bandwidth_hz=1.0e6", "wireless.link=error_free", f"data.dir={glue_dir}",
                 "train.num_threads=1"]
    try:
        ref = tmp_path / "ref"
        assert main(["run", "--out", str(ref), *overrides, "--quiet"]) == 0
        out = tmp_path / "run"
        cfg = load_config(None, overrides)
        rundir.prepare(cfg, out)
        run_experiment(cfg, out, stop_after_round=1)
        assert main(["run", "--quiet", "--resume", str(out)]) == 0
    finally:
        torch.set_num_threads(before)
    metrics, clients = read(ref / "metrics.jsonl"), read(ref / "clients.jsonl")
    def strip(rows):
        return ([{k: v for k, v in r.items() if k != "wall_time_s"} for r in rows])
    assert strip(read(out / "metrics.jsonl")) == strip(metrics)
    assert strip(read(out / "clients.jsonl")) == strip(clients)
    # the budget is below the compute time: the queue grows and TSFA sparsifies after round 0
    assert metrics[0]["tsfa_mean_keep_ratio"] == 1.0 and metrics[0]["tsfa_queue_s"] > 0
    assert metrics[-1]["tsfa_mean_keep_ratio"] < 1.0 and metrics[-1]["soft_mean_kept"] < R
    for m in metrics:
        assert m["tsfa_planned_latency_s"] == pytest.approx(m["round_latency_s"], rel=1e-9)
        assert m["alloc_selected"] == 2 and m["soft_rank"] == R
    # uplink bits: m (d + n) * 32 per matrix + r-bit mask per matrix + the head, m = keep_ratio * r
    for row in metrics:
        sel = [c for c in clients if c["round"] == row["round"] and c["selected"]]
        kept = sorted(round(b) for b in [(c["payload_bits"] - HEAD_BITS - LAYERS * R) / (LAYERS * 2 * D * 32)
                                         for c in sel])
        assert all(1 <= k <= R for k in kept)
        assert sum(c["payload_bits"] for c in sel) == sum(
            k * LAYERS * 2 * D * 32 + LAYERS * R + HEAD_BITS for k in kept)


def test_tsfa_stage1_decides_the_trained_rank_by_default(glue_dir, tmp_path):
    """rank_policy=adopt (default): the adapters are built at the stage-1 rank, whatever lora.rank says."""
    before = torch.get_num_threads()
    overrides = ["rounds=1", "eval_every=1", "num_devices=4", "devices_per_round=2", "data.train_subset=300",
                 "data.test_subset=50", "train.local_steps=1", "strategy.name=soft", "allocation.name=tsfa",
                 "allocation.options.latency_budget_s=50.0", "allocation.options.stage1_samples=8",
                 "allocation.options.candidate_ranks=[2,4]", "lora.rank=8", "wireless.link=error_free",
                 f"data.dir={glue_dir}", "train.num_threads=1"]
    try:
        assert main(["run", "--out", str(tmp_path / "run"), *overrides, "--quiet"]) == 0
    finally:
        torch.set_num_threads(before)
    (row,) = read(tmp_path / "run" / "metrics.jsonl")
    assert row["tsfa_stage1_rank"] in (2, 4) and row["soft_rank"] == row["tsfa_stage1_rank"]
    # uplink: m (d + n) 32 per matrix + the r-bit masks + head, with r the stage-1 rank
    r = row["soft_rank"]
    clients = [c for c in read(tmp_path / "run" / "clients.jsonl") if c["selected"]]
    for c in clients:
        m = (c["payload_bits"] - HEAD_BITS - LAYERS * r) / (LAYERS * 2 * D * 32)
        assert m == round(m) and 1 <= m <= r
