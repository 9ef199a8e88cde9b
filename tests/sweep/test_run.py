"""``airtune sweep``: runs a spec in parallel worker processes and through submitit's local
executor, resumes an interrupted sweep (finished runs skipped, an interrupted run continued from
its checkpoint), records a failed run without stopping the others, and reports statistics."""

from __future__ import annotations

import json

import pytest
import yaml

from airtune.cli import main
from airtune.config import load_config
from airtune.experiment import rundir
from airtune.experiment.runner import run_experiment
from airtune.report.sweep_stats import sweep_report
from airtune.sweep.run import run_sweep
from airtune.sweep.spec import expand, load_spec
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.slow


def spec_file(tmp_path, glue_dir, schemes, seeds=(0, 1), **extra):
    overrides = tiny_overrides(glue_dir, rounds=2, **{"train.local_steps": 2})
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "overrides": overrides, "schemes": schemes, "seeds": list(seeds),
                                    "threads_per_worker": 1, **extra}))
    return path


def test_parallel_sweep_runs_and_reports(tmp_path, glue_dir, capsys):
    path = spec_file(tmp_path, glue_dir, {"fedit": [], "topk": ["strategy.name=topk_lora"]}, workers=2)
    out = tmp_path / "sweep"
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    assert "4 of 4 runs done, 0 failed" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert {e["status"] for e in manifest["runs"].values()} == {"done"}
    for e in manifest["runs"].values():
        assert (out / e["run_dir"] / "summary.json").exists() and e["summary"]["final_accuracy"] is not None
    res = sweep_report(out, tmp_path / "report", target_accuracy=0.5)
    assert "| topk | 2 |" in res["table"] and "topk vs fedit" in res["paired"]
    assert any(v in res["paired"] for v in ("better", "no difference detected"))
    assert res["report"].exists() and all(p.exists() for p in res["plots"])
    assert main(["report", str(out), "--out", str(tmp_path / "r2"), "--target-accuracy", "0.5"]) == 0


def test_interrupted_sweep_resumes(tmp_path, glue_dir):
    path = spec_file(tmp_path, glue_dir, {"fedit": []})
    out = tmp_path / "sweep"
    runs = expand(*load_spec(path))
    first = runs[0]                                   # killed after its round 0 checkpoint
    cfg = load_config(None, first.overrides)
    run_dir = out / "runs" / first.run_id
    rundir.prepare(cfg, run_dir)
    run_experiment(cfg, run_dir, stop_after_round=0)
    assert not (run_dir / "summary.json").exists()
    updates = {}
    run_sweep(path, out, on_update=lambda rid, e: updates.setdefault(rid, dict(e)))
    assert set(updates) == {r.run_id for r in runs}
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["round"] for x in lines] == [0, 1]            # continued, not restarted
    assert updates[first.run_id]["resumed"] is True and updates[runs[1].run_id]["resumed"] is False
    assert "resume=True" in (run_dir / "run.log").read_text()
    stamp = (run_dir / "summary.json").stat().st_mtime_ns
    again = {}
    run_sweep(path, out, on_update=lambda rid, e: again.setdefault(rid, e))
    assert again == {} and (run_dir / "summary.json").stat().st_mtime_ns == stamp   # finished runs are skipped


def test_a_failed_run_is_recorded_and_the_others_finish(tmp_path, glue_dir, capsys):
    path = spec_file(tmp_path, glue_dir, {"ok": [], "broken": [f"model.name={tmp_path / 'no-such-model'}"]},
                     seeds=(0,))
    out = tmp_path / "sweep"
    assert main(["sweep", str(path), "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert "failed: broken__seed0: " in text and "no-such-model" in text and "1 of 2 runs done, 1 failed" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["runs"]["ok__seed0"]["status"] == "done"
    assert manifest["runs"]["broken__seed0"]["status"] == "failed" and "no-such-model" in manifest["runs"]["broken__seed0"]["error"]


def test_submitit_local_executor(tmp_path, glue_dir):
    pytest.importorskip("submitit")
    path = spec_file(tmp_path, glue_dir, {"fedit": []}, seeds=(0,))
    out = tmp_path / "sweep"
    manifest = run_sweep(path, out, executor="submitit-local")
    assert manifest["runs"]["fedit__seed0"]["status"] == "done", manifest["runs"]["fedit__seed0"].get("error")
    assert (out / "submitit").is_dir() and (out / "runs" / "fedit__seed0" / "summary.json").exists()
