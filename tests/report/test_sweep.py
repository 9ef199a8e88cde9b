"""`airtune report --sweep`: rounds and simulated time to target against a config value."""

from __future__ import annotations

import pytest
import yaml

from airtune.cli import main
from airtune.errors import AirtuneError
from airtune.report import load_runs, make_report
from airtune.report.sweep import sweep_points

from .test_report import PNG_MAGIC, write_run


def sweep_run(tmp_path, strategy, k, accs):
    d = write_run(tmp_path / f"{strategy}-K{k}", f"{strategy}-K{k}", strategy, accs)
    cfg = yaml.safe_load((d / "config.resolved.yaml").read_text())
    cfg["num_devices"] = k
    (d / "config.resolved.yaml").write_text(yaml.safe_dump(cfg))
    return d


@pytest.fixture
def grid(tmp_path):
    return [sweep_run(tmp_path, "fedit", 50, [0.5, 0.7, 0.8, 0.6]),   # reaches 0.75 after round 3
            sweep_run(tmp_path, "fedit", 20, [0.76, 0.7, 0.8, 0.9]),   # after round 1
            sweep_run(tmp_path, "soft", 20, [0.5, None, 0.6, 0.7])]    # never


def test_seeds_are_averaged_over_the_runs_that_reached(grid, tmp_path):
    again = write_run(tmp_path / "fedit-K20-s1", "fedit-K20-s1", "fedit", [0.5, 0.6, 0.7, 0.78])  # round 4
    cfg = yaml.safe_load((again / "config.resolved.yaml").read_text())
    (again / "config.resolved.yaml").write_text(yaml.safe_dump({**cfg, "num_devices": 20}))
    res = make_report([*grid, again], tmp_path / "rep", target_accuracy=0.75, sweep="num_devices")
    md = res["report"].read_text()
    assert "| fedit | 20 | 2 / 2 | 2.50 | 5.00 | 0.8400 |" in md  # rounds 1 and 4, times 2 s and 8 s
    assert "| soft | 20 | 0 / 1 | ≥ 4.00 | ≥ 8.00 | 0.7000 |" in md  # a miss counts at its bound


def test_points_by_hand(grid):
    pts = sweep_points(load_runs(grid), "num_devices", "strategy.name", 0.75)
    assert [(p["series"], p["x"]) for p in pts] == [("fedit", 20), ("fedit", 50), ("soft", 20)]
    # write_run logs sim_time_s = 2 (round + 1): round 1 -> 2 s, round 3 -> 6 s
    assert [p["rounds_to_target"] for p in pts] == [1, 3, None]
    assert [p["time_to_target_s"] for p in pts] == [2.0, 6.0, None]
    assert [p["rounds_bound"] for p in pts] == [1, 3, 4] and pts[2]["time_bound_s"] == 8.0
    assert pts[2]["best_accuracy"] == 0.7 and pts[1]["final_accuracy"] == 0.6


def test_make_report_with_sweep_writes_the_table_and_two_pngs(grid, tmp_path):
    res = make_report(grid, tmp_path / "rep", target_accuracy=0.75, sweep="num_devices")
    names = {p.name for p in res["plots"]}
    assert {"sweep_num_devices_rounds.png", "sweep_num_devices_time.png"} <= names
    for p in res["plots"]:
        assert p.read_bytes()[:8] == PNG_MAGIC
    md = res["report"].read_text()
    assert "| fedit | 50 | fedit-K50 | 3 | 6.00 |" in md
    assert "| soft | 20 | soft-K20 | not reached in 4 | — |" in md


def test_sweep_errors_are_one_line_and_write_nothing(grid, tmp_path):
    with pytest.raises(AirtuneError, match="--sweep num_devices needs a target; fix: add --target-accuracy"):
        make_report(grid, tmp_path / "a", sweep="num_devices")
    with pytest.raises(AirtuneError, match="no config key 'lora.rank'; fix"):
        make_report(grid, tmp_path / "b", target_accuracy=0.75, sweep="lora.rank")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_sweep(grid, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["report", *map(str, grid), "--out", str(out), "--target-accuracy", "0.75",
                 "--sweep", "num_devices", "--series", "strategy.name"])
    assert code == 0 and (out / "sweep_num_devices_rounds.png").is_file()
    assert "| fedit | 20 | fedit-K20 | 1 | 2.00 |" in (out / "report.md").read_text()
    capsys.readouterr()
    code = main(["report", str(grid[0]), "--out", str(tmp_path / "bad"), "--sweep", "num_devices"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--target-accuracy" in err[0]


def test_seed_metrics_uplink_to_target_by_hand(tmp_path):
    """Communication at equal accuracy: cumulative uplink when the target is first met, else censored."""
    from airtune.report.runs import load_run
    from airtune.report.sweep_stats import seed_metrics

    hit = write_run(tmp_path / "hit", "hit", "fedit", [0.5, 0.7, 0.8, 0.6], bits_per_round=2e6)  # round 3
    miss = write_run(tmp_path / "miss", "miss", "soft", [0.5, None, 0.6, 0.7], bits_per_round=1e6)
    m = seed_metrics(load_run(hit), 0.75, 3)
    assert m["target_reached"] and m["rounds_to_target"] == 3
    assert m["uplink_to_target_bits"] == 6e6 and m["time_to_target_s"] == 6.0
    m = seed_metrics(load_run(miss), 0.75, 3)
    assert not m["target_reached"] and m["uplink_to_target_bits"] == 4e6  # censored at the total


def test_paired_target_rows_use_only_seeds_where_both_reached():
    from airtune.report.sweep_stats import _paired_table

    def m(reached, rounds, up):
        return {"final_accuracy": 0.8, "best_accuracy": 0.8, "last_k_accuracy": 0.8, "sim_time_s": 10.0,
                "uplink_bits": 1e6, "energy_j": 1.0, "target_reached": reached, "rounds_to_target": rounds,
                "time_to_target_s": 2.0 * rounds, "uplink_to_target_bits": up}
    per = {("a", "{}"): {0: m(True, 2, 4e6), 1: m(True, 4, 8e6), 2: m(True, 2, 4e6)},
           ("b", "{}"): {0: m(True, 4, 2e6), 1: m(True, 6, 3e6), 2: m(False, 8, 1e6)}}  # seed 2 censored
    md = _paired_table(per, ["a", "b"], "a", target=True)
    row = next(r for r in md.splitlines() if "uplink to target" in r)
    assert "| -3.5 [" in row and "| 2 |" in row  # (2-4 + 3-8)/2 Mbit on seeds 0 and 1 only
    row = next(r for r in md.splitlines() if "rounds to target" in r)
    assert "| 2.00 [2.00, 2.00] | 2 |" in row and "a better" in row
    assert "to target" not in _paired_table(per, ["a", "b"], "a")


def test_sweep_report_names_the_sweep_relative_to_the_working_directory(tmp_path, monkeypatch):
    """A committed report must not carry this machine's absolute paths."""
    from airtune.report.sweep_stats import _shown

    (tmp_path / "runs" / "sweeps" / "s").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert _shown(tmp_path / "runs" / "sweeps" / "s") == "runs/sweeps/s"
    assert _shown(tmp_path.parent) == str(tmp_path.parent.resolve())   # outside: absolute
