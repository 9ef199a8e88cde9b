"""airtune through Flower's message API without processes: a FakeGrid calls the ClientApp in-process.

``GridEngine.run(tasks)`` equals ``Engine.run(tasks)`` tensor for tensor, and a whole run through
the ServerApp writes the same ``metrics.jsonl`` and ``clients.jsonl`` as the in-process runner,
for the default experiment and one config of each paper. Failures: a node that errs or dies
loses its devices' updates (the run goes on); a missing quorum or a foreign config stops the
run with one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("flwr")

from airtune.config import load_config  # noqa: E402
from airtune.errors import ConfigError  # noqa: E402
from airtune.experiment import rundir  # noqa: E402
from airtune.experiment.runner import build_at_planned_rank, make_engine, run_experiment  # noqa: E402
from airtune.flower.app_files import write_app  # noqa: E402
from airtune.flower.client_app import make_client_app  # noqa: E402
from airtune.flower.grid_engine import TRAIN, GridEngine  # noqa: E402
from airtune.flower.handshake import handshake  # noqa: E402
from airtune.flower.server_app import TRAFFIC, run_server  # noqa: E402
from airtune.flower.settings import read_settings  # noqa: E402
from tests.conftest import ROOT, tiny_overrides  # noqa: E402
from tests.flower.fake_grid import FakeGrid  # noqa: E402

VOLATILE = {"wall_time_s"}
SHARDS = {11: {"airtune-devices": "0-1"}, 22: {"airtune-devices": "2-3"}}
SLOW = pytest.mark.slow  # 30-100 s each on the shared 2-core machine
PAPERS = [None,                                                       # the default experiment
          pytest.param("configs/split/sst2-split-shared.yaml", marks=SLOW),    # paper 1: split, chained LoRA
          pytest.param("configs/soft/sst2-soft_tsfa.yaml", marks=SLOW),        # paper 2: SOFT + TSFA planner
          pytest.param("configs/switching/sst2-switching.yaml", marks=SLOW),   # paper 3: module switching
          pytest.param("configs/aggregators/sst2-flora.yaml", marks=SLOW)]     # FLoRA: base_delta, receive


def records(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def _cfg(glue_dir, config=None, **extra):
    return load_config(ROOT / config if config else None, tiny_overrides(glue_dir, **extra))


def _assert_same_update(a, b):
    assert (a.device, a.num_samples, a.memo, a.traffic) == (b.device, b.num_samples, b.memo, b.traffic)
    assert a.train_loss == b.train_loss
    assert a.state.keys() == b.state.keys()
    for k in a.state:
        assert a.state[k].dtype == b.state[k].dtype and torch.equal(a.state[k], b.state[k]), k


@pytest.mark.parametrize("placement, nodes", [
    ("shard-per-node", SHARDS),
    ("device-per-node", {100 + k: {"airtune-device": k} for k in range(4)}),
])
def test_grid_engine_equals_engine(glue_dir, tmp_path, placement, nodes):
    cfg = _cfg(glue_dir)
    app_dir = write_app(tmp_path / "app", cfg, placement=placement)
    run_config = {"placement": placement}
    grid = FakeGrid(make_client_app(app_dir), nodes, run_config)
    s = build_at_planned_rank(cfg)
    local = make_engine(s)
    server = s.strategy.init_state(s.initial_state)
    tasks = s.strategy.configure_round(0, server, [0, 1, 3], {0: 11, 1: 12, 3: 13}, 2)
    engine = GridEngine(local, grid, handshake(grid, cfg, read_settings(run_config, app_dir)), timeout=60)
    got = engine.run(tasks)
    want = local.run(tasks)
    assert engine.failed == {}
    assert len(got) == len(want) == 3
    for a, b in zip(got, want):
        _assert_same_update(a, b)
    train = [m for m in grid.sent if m.metadata.message_type == TRAIN]
    assert len(train) == (2 if placement == "shard-per-node" else 3)   # one message per node per round


@pytest.mark.parametrize("config", PAPERS, ids=["default", "split-shared", "soft_tsfa", "switching", "flora"])
def test_whole_run_writes_the_same_records(glue_dir, tmp_path, config):
    cfg = _cfg(glue_dir, config, rounds=2)
    ref = tmp_path / "ref"
    rundir.prepare(cfg, ref)
    run_experiment(cfg, ref)
    app_dir = write_app(tmp_path / "app", cfg)
    out = tmp_path / "flower"
    grid = FakeGrid(make_client_app(app_dir), SHARDS, {"out": str(out)})
    run_server(grid, {"out": str(out)}, app_dir)
    for name in (rundir.METRICS, rundir.CLIENTS):
        assert records(out / name) == records(ref / name), name
    traffic = json.loads((out / TRAFFIC).read_text())
    assert traffic["messages"] == traffic["replies"] > 0 and traffic["down_array_bytes"] > 0


class DiesAfter(FakeGrid):
    """Node ``victim`` stops answering (and disappears) after ``n`` train messages in total."""

    def __init__(self, *a, victim: int, n: int, **kw):
        super().__init__(*a, **kw)
        self.victim, self.n = victim, n

    def push_messages(self, messages):
        ids = super().push_messages(messages)
        if sum(m.metadata.message_type == TRAIN for m in self.sent) > self.n:
            self.dead.add(self.victim)
        return ids


@pytest.mark.parametrize("how", ["dies", pytest.param("errs", marks=SLOW)])
def test_failed_node_loses_its_updates_and_the_run_goes_on(glue_dir, tmp_path, how):
    cfg = _cfg(glue_dir, rounds=2, devices_per_round=4, eval_every=2)
    app_dir = write_app(tmp_path / "app", cfg)
    out = tmp_path / "run"
    rc = {"out": str(out)}
    if how == "dies":
        grid = DiesAfter(make_client_app(app_dir), SHARDS, rc, victim=22, n=2)   # both nodes train round 0
    else:
        grid = FakeGrid(make_client_app(app_dir), SHARDS, rc)
        grid.erring.add(22)
    summary = run_server(grid, rc, app_dir)
    rows = records(out / rundir.METRICS)
    assert len(rows) == 2 and summary["rounds"] == 2
    later = rows[1:] if how == "dies" else rows
    for r in later:
        assert set(r["lost"]) >= {2, 3} and not {2, 3} & set(r["delivered"])
    log = (out / rundir.LOG).read_text()
    assert ("injected failure" in log) if how == "errs" else ("not connected" in log or "did not reply" in log)
    clients = [c for c in records(out / rundir.CLIENTS) if c["round"] == 1 and c["device"] in (2, 3)]
    assert all(not c["delivered"] and c["payload_bits"] == 0 for c in clients)


def test_missing_quorum_times_out_with_one_line(glue_dir, tmp_path):
    cfg = _cfg(glue_dir)
    app_dir = write_app(tmp_path / "app", cfg)
    rc = {"quorum-timeout": 0.5}
    grid = FakeGrid(make_client_app(app_dir), {11: {"airtune-devices": "0-1"}}, rc)
    with pytest.raises(ConfigError) as exc:
        handshake(grid, cfg, read_settings(rc, app_dir), poll_s=0.1)
    msg = str(exc.value)
    assert "devices 2-3 have no Flower node" in msg and "fix:" in msg and "\n" not in msg


def test_node_with_another_config_is_refused(glue_dir, tmp_path):
    cfg = _cfg(glue_dir)
    app_dir = write_app(tmp_path / "app", cfg)
    grid = FakeGrid(make_client_app(app_dir), SHARDS, {"airtune-overrides": "seed=1"})  # the nodes' config
    with pytest.raises(ConfigError, match=r"flower node \d+ runs airtune .* config hash"):
        handshake(grid, cfg, read_settings({}, app_dir))


class Crash(BaseException):
    """Stands for SIGKILL of the ServerApp (not an Exception: nothing may catch it)."""


class CrashesAt(FakeGrid):
    """The ServerApp 'dies' when it sends the train messages of round ``at`` (counted from 1)."""

    def __init__(self, *a, at: int, **kw):
        super().__init__(*a, **kw)
        self.at, self.rounds = at, 0

    def send_and_receive(self, messages, *, timeout=None):
        messages = list(messages)
        if messages and messages[0].metadata.message_type == TRAIN:
            self.rounds += 1
            if self.rounds == self.at:
                raise Crash
        return super().send_and_receive(messages, timeout=timeout)


@SLOW
def test_resume_after_a_crashed_serverapp_equals_uninterrupted(glue_dir, tmp_path):
    cfg = _cfg(glue_dir, rounds=2)
    ref = tmp_path / "ref"
    rundir.prepare(cfg, ref)
    run_experiment(cfg, ref)
    app_dir = write_app(tmp_path / "app", cfg)
    out = tmp_path / "run"
    rc = {"out": str(out)}
    with pytest.raises(Crash):
        run_server(CrashesAt(make_client_app(app_dir), SHARDS, rc, at=2), rc, app_dir)
    assert len(records(out / rundir.METRICS)) == 1
    rc = {**rc, "resume": True}
    run_server(FakeGrid(make_client_app(app_dir), SHARDS, rc), rc, app_dir)
    for name in (rundir.METRICS, rundir.CLIENTS):
        assert records(out / name) == records(ref / name), name
