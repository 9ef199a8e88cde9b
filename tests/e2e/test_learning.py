"""A tiny real federated run on SST-2 learns: accuracy clearly above chance (0.5)."""

from __future__ import annotations

import json

import pytest

from airtune.cli import main
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.slow


def test_fedit_learns_sst2(glue_dir, tmp_path):
    out = tmp_path / "run"
    args = tiny_overrides(glue_dir, **{"data.partition": "iid", "data.train_subset": 1200, "rounds": 4,
                                       "eval_every": 4, "train.local_steps": 12, "train.batch_size": 16,
                                       "train.lr": 2e-3, "wireless.link": "error_free"})
    assert main(["run", "--quiet", "--out", str(out), *args]) == 0
    summary = json.loads((out / "summary.json").read_text())
    # 200 balanced test sentences: chance is 0.5; 0.70 is far outside its sampling noise (sd 0.035).
    assert summary["final_accuracy"] >= 0.70, summary
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["round"] for m in metrics] == [0, 1, 2, 3]
    assert all(m["uplink_bits"] > 0 and m["energy_j"] > 0 and m["sim_time_s"] > 0 for m in metrics)
