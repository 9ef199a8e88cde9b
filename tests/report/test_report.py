"""`airtune report` on synthetic run directories: PNGs, comparison table, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from airtune.errors import AirtuneError
from airtune.report import comparison_table, load_run, load_runs, make_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(d, name, strategy, accs, *, bits_per_round=1e6, extra_files=True):
    """A run directory like `airtune run --out` writes; accs[i] None = not evaluated in round i."""
    d.mkdir(parents=True)
    (d / "config.resolved.yaml").write_text(yaml.safe_dump({"name": name, "strategy": {"name": strategy}, "rounds": len(accs)}))
    lines = []
    for r, acc in enumerate(accs):
        lines.append(json.dumps({
            "round": r, "sim_time_s": 2.0 * (r + 1), "round_latency_s": 2.0, "accuracy": acc,
            "loss": None if acc is None else 1 - acc, "train_loss": 0.5, "uplink_bits": int(bits_per_round),
            "downlink_bits": int(2 * bits_per_round), "energy_j": 1.5, "cum_uplink_bits": int(bits_per_round * (r + 1)),
            "cum_downlink_bits": int(2 * bits_per_round * (r + 1)), "cum_energy_j": 1.5 * (r + 1),
            "selected": [0, 1], "delivered": [0], "lost": [1], "wall_time_s": 0.1, "queue": 0.1 * r,
        }))
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if extra_files:
        (d / "summary.json").write_text(json.dumps({"rounds": len(accs)}))
        (d / "env.json").write_text("{}")
    return d


@pytest.fixture
def two_runs(tmp_path):
    a = write_run(tmp_path / "runs" / "a", "fedit-sst2", "fedit", [None, 0.61, None, 0.7234567])
    b = write_run(tmp_path / "runs" / "b", "hetlora-sst2", "hetlora", [0.5, None, 0.8, 0.79], bits_per_round=3e8)
    return a, b


def test_make_report_writes_pngs_and_table(two_runs, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    res = make_report(two_runs, out, target_accuracy=0.75)
    assert (out / "keep.txt").read_text() == "mine"
    names = sorted(p.name for p in res["plots"])
    assert names == ["accuracy_vs_round.png", "accuracy_vs_time.png", "bits.png", "energy.png"]
    for p in res["plots"]:
        data = p.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, p
    md = res["report"].read_text()
    assert res["report"] == out / "report.md"
    assert "![accuracy_vs_round](accuracy_vs_round.png)" in md
    assert res["table"] in md


def test_table_one_row_per_run_with_final_accuracy(two_runs):
    table = comparison_table(load_runs(two_runs), target_accuracy=0.75)
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]  # drop header
    assert len(rows) == 2
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert cells[0][:5] == ["fedit-sst2", "fedit", "4", "0.7235", "0.7235"]
    assert cells[1][:5] == ["hetlora-sst2", "hetlora", "4", "0.7900", "0.8000"]
    # sim time, uplink Mbit (4 x 1 Mbit; 4 x 300 Mbit), downlink, energy, rounds to 0.75
    assert cells[0][5:] == ["8.00", "4.00", "8.00", "6.00", "not reached"]
    assert cells[1][5:] == ["8.00", "1,200", "2,400", "6.00", "3"]
    assert "rounds to" not in comparison_table(load_runs(two_runs))


def test_labels_fall_back_to_dir_name_and_are_unique(tmp_path):
    a = write_run(tmp_path / "x" / "run1", "same", "fedit", [0.5])
    b = write_run(tmp_path / "y" / "run2", "same", "fedit", [0.6])
    (a / "config.resolved.yaml").unlink()
    c = write_run(tmp_path / "z" / "run3", "same", "soft", [0.7])
    runs = load_runs([a, b, c])
    assert runs[0].label == "run1" and runs[0].strategy == "?"
    assert runs[1].label != runs[2].label and {runs[1].label, runs[2].label} == {"same [run2]", "same [run3]"}


def test_missing_metrics_is_a_one_line_error(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    with pytest.raises(AirtuneError) as exc:
        load_run(d)
    msg = str(exc.value)
    assert msg == f"RUN_DIR '{d}' has no metrics.jsonl; fix: pass a directory written by `airtune run --out`"
    assert "\n" not in msg
    with pytest.raises(AirtuneError, match="no metrics.jsonl"):
        make_report([d], tmp_path / "out")


def test_report_handles_unevaluated_and_partial_runs(tmp_path):
    d = write_run(tmp_path / "r", "never-evaluated", "fedit", [None, None], extra_files=False)
    with open(d / "metrics.jsonl", "a") as f:
        f.write('{"round": 2, "acc')  # killed mid-write
    res = make_report([d], tmp_path / "out")
    assert "| never-evaluated | fedit | 2 | — | — |" in res["table"]
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in res["plots"])


def test_report_never_imports_torch():
    code = (
        "import sys, airtune.report, airtune.report.plots, airtune.metrics; "
        "bad = [m for m in ('torch', 'transformers', 'peft', 'airtune.training', 'airtune.experiment') if m in sys.modules]; "
        "assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
