"""Tracking sinks mirror metrics.jsonl: numeric fields by hand, MLflow's public calls (with a
recording stand-in module), TensorBoard's event file read back with TensorBoard's own reader."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest

from airtune.errors import ConfigError
from airtune.metrics.sinks import MLflowSink, TensorBoardSink, make_sinks, numeric_scalars

RECORD = {"round": 3, "accuracy": 0.8, "energy_j": 2, "lost": [1, 2], "message": "x", "ok": True,
          "nan": float("nan"), "none": None, "extra": {"lyap_N": 4, "deep": {"q": 0.5}}}


def test_numeric_scalars_by_hand():
    assert numeric_scalars(RECORD) == {"accuracy": 0.8, "energy_j": 2.0, "extra/lyap_N": 4.0, "extra/deep/q": 0.5}


def test_mlflow_sink_uses_the_public_api(monkeypatch):
    calls = []
    fake = types.ModuleType("mlflow")
    fake.set_tracking_uri = lambda uri: calls.append(("uri", uri))
    fake.set_experiment = lambda name: calls.append(("experiment", name))
    fake.start_run = lambda run_name: calls.append(("start", run_name)) or SimpleNamespace()
    fake.log_params = lambda p: calls.append(("params", dict(p)))
    fake.log_metrics = lambda m, step: calls.append(("metrics", dict(m), step))
    fake.end_run = lambda: calls.append(("end",))
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    params = {"seed": 0, "train": {"lr": 0.001}, "strategy": {"options": {}}}
    sink = MLflowSink("exp", "run1", "file:/tmp/mlruns", {**params, **{f"k{i}": i for i in range(150)}})
    sink.log(RECORD)
    sink.close()
    assert calls[:3] == [("uri", "file:/tmp/mlruns"), ("experiment", "exp"), ("start", "run1")]
    sent = [c[1] for c in calls if c[0] == "params"]
    assert len(sent) == 2 and all(len(p) <= 100 for p in sent)     # at most 100 parameters per call
    merged = {k: v for p in sent for k, v in p.items()}
    assert merged["train.lr"] == "0.001" and merged["strategy.options"] == "{}" and len(merged) == 153
    assert ("metrics", numeric_scalars(RECORD), 3) in calls and calls[-1] == ("end",)


def test_missing_library_is_a_one_line_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ConfigError, match="pip install mlflow-skinny"):
        MLflowSink("e", "r", None, {})


def test_no_sinks_by_default(tmp_path):
    tracking = SimpleNamespace(tensorboard=False, mlflow=False)
    assert make_sinks(tracking, tmp_path, "r", {}) == []


def test_tensorboard_events_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sink = TensorBoardSink(tmp_path / "tb")
    sink.log(RECORD)
    sink.log({**RECORD, "round": 4, "accuracy": 0.9})
    sink.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == set(numeric_scalars(RECORD))
    events = acc.Scalars("accuracy")
    assert [(e.step, round(e.value, 6)) for e in events] == [(3, 0.8), (4, 0.9)]


@pytest.mark.slow
def test_a_run_with_tensorboard_mirrors_metrics_jsonl(glue_dir, tmp_path):
    pytest.importorskip("tensorboard")
    import json

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from airtune.cli import main
    from tests.conftest import tiny_overrides

    out = tmp_path / "run"
    assert main(["run", "--quiet", "--out", str(out), "tracking.tensorboard=true", "train.num_threads=1",
                 *tiny_overrides(glue_dir, rounds=2, eval_every=1, **{"train.local_steps": 1})]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    events = acc.Scalars("accuracy")
    assert [e.step for e in events] == [r["round"] for r in rows]
    assert [e.value for e in events] == pytest.approx([r["accuracy"] for r in rows], rel=1e-6)  # float32 events
