"""One tiny real run per heterogeneous-rank strategy from the CLI (SST-2, random ranks {2, 4, 8}).

Each run checks the plumbing end to end: two rounds logged, every device's rank in clients.jsonl,
uplink payloads that match the device's rank exactly, FLoRA's downlink growing with the stack.
"""

from __future__ import annotations

import json

import pytest
import torch

from airtune.cli import main

pytestmark = pytest.mark.slow

D = 384                  # MiniLM-L6 hidden size: query and value are (384, 384)
LAYERS = 12              # 6 layers x (query, value)
HEAD = 2 * D + 2         # classifier weight and bias
BITS = 32


@pytest.fixture
def one_thread():
    """One torch thread: with another process on the 2 cores, two threads run ~3x slower here."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("name", ["hetlora", "flexlora", "ffa_lora", "flora"])
def test_strategy_runs_from_the_cli(name, glue_dir, tmp_path, one_thread):
    out = tmp_path / "run"
    args = ["run", "--out", str(out), "rounds=2", "num_devices=4", "devices_per_round=2",
            "data.train_subset=400", "data.test_subset=100", "train.local_steps=2", f"strategy.name={name}",
            "lora.device_ranks=random_set", f"data.dir={glue_dir}", "train.num_threads=1", "--quiet"]
    assert main(args) == 0
    metrics, clients = read(out / "metrics.jsonl"), read(out / "clients.jsonl")
    assert [m["round"] for m in metrics] == [0, 1]
    assert metrics[-1]["accuracy"] is not None and len(clients) == 8
    assert all(c["rank"] in (2, 4, 8) for c in clients)
    per_rank = D if name == "ffa_lora" else 2 * D  # FFA-LoRA sends B only
    for c in clients:
        if c["selected"]:
            assert c["payload_bits"] == BITS * (LAYERS * per_rank * c["rank"] + HEAD), c
    if name == "flora":
        first, second = metrics
        stack = first["stack_rank"]
        dl = [c["downlink_bits"] for c in clients if c["selected"] and c["round"] == 1]
        assert all(b == BITS * (HEAD + LAYERS * 2 * D * stack) for b in dl)
    assert (out / "checkpoint" / "adapter" / "adapter_model.safetensors").exists()


def test_flora_resume_rebuilds_the_merged_base_weights(glue_dir, tmp_path, one_thread):
    """The merged base weights live only in the server state: a resumed run must match exactly."""
    from airtune.config import load_config
    from airtune.experiment import rundir
    from airtune.experiment.runner import run_experiment

    overrides = ["rounds=2", "eval_every=1", "num_devices=4", "devices_per_round=2", "data.train_subset=400",
                 "data.test_subset=100", "train.local_steps=2", "strategy.name=flora", "wireless.link=error_free",
                 "lora.device_ranks=random_set", f"data.dir={glue_dir}", "train.num_threads=1"]
    ref = tmp_path / "ref"
    assert main(["run", "--out", str(ref), *overrides, "--quiet"]) == 0
    out = tmp_path / "run"
    cfg = load_config(None, overrides)
    rundir.prepare(cfg, out)
    run_experiment(cfg, out, stop_after_round=0)
    assert main(["run", "--quiet", "--resume", str(out)]) == 0
    def strip(rows):
        return ([{k: v for k, v in r.items() if k != "wall_time_s"} for r in rows])
    for name in ("metrics.jsonl", "clients.jsonl"):
        assert strip(read(out / name)) == strip(read(ref / name))
    assert read(ref / "metrics.jsonl")[0]["stack_rank"] > 0  # round 0 merged something
