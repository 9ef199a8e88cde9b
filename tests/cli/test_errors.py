"""Bad input: a one-line error naming the field, the value and the fix; exit 2; nothing overwritten."""

from __future__ import annotations

import pytest

from airtune.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines(), captured.out


def test_unknown_strategy_lists_available(capsys):
    code, err, _ = run_cli(capsys, "validate", "strategy.name=fedx")
    assert code == 2 and len(err) == 1
    assert "strategy.name = 'fedx'" in err[0] and "fedit" in err[0] and "full_ft" in err[0]


def test_negative_bandwidth(capsys):
    code, err, _ = run_cli(capsys, "run", "wireless.uplink_bandwidth_hz=-5")
    assert code == 2 and len(err) == 1
    assert "wireless.uplink_bandwidth_hz" in err[0] and "-5" in err[0] and "fix:" in err[0]


def test_more_devices_per_round_than_devices(capsys):
    code, err, _ = run_cli(capsys, "validate", "num_devices=4", "devices_per_round=9")
    assert code == 2 and len(err) == 1 and "devices_per_round = 9" in err[0] and "fix:" in err[0]


def test_validate_reports_every_error_at_once(capsys):
    code, err, _ = run_cli(capsys, "validate", "rounds=0", "lora.rank=-1", "strategy.options.x=1")
    assert code == 2 and len(err) == 2  # the two schema errors; registry checks need a valid schema
    assert any("rounds" in e for e in err) and any("lora.rank" in e for e in err)


def test_unknown_strategy_option(capsys):
    code, err, _ = run_cli(capsys, "validate", "strategy.options.nonsense=1")
    assert code == 2 and len(err) == 1 and "nonsense" in err[0] and "fix:" in err[0]


def test_malformed_yaml(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rounds: 3\nlora: [rank: 4\n")
    code, err, _ = run_cli(capsys, "run", str(bad))
    assert code == 2 and len(err) == 1 and "bad.yaml" in err[0] and "line" in err[0]


def test_missing_data_dir_says_where_it_looked(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AIRTUNE_DATA_DIR", raising=False)
    out = tmp_path / "run"
    code, err, _ = run_cli(capsys, "run", "--quiet", "--out", str(out), f"data.dir={tmp_path / 'nope'}")
    assert code == 2 and len(err) == 1
    assert "nope" in err[0] and "AIRTUNE_DATA_DIR" in err[0] and "fix" in err[0]
    assert not out.exists()  # nothing written before the input was checked


def test_existing_run_directory_is_not_overwritten(tmp_path, capsys, glue_dir):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"round": 0}\n')
    code, err, _ = run_cli(capsys, "run", "--quiet", "--out", str(out), f"data.dir={glue_dir}")
    assert code == 2 and len(err) == 1 and "--resume" in err[0]
    assert (out / "metrics.jsonl").read_text() == '{"round": 0}\n'


def test_resume_of_a_directory_without_a_run(tmp_path, capsys):
    code, err, _ = run_cli(capsys, "run", "--resume", str(tmp_path))
    assert code == 2 and len(err) == 1 and "config.resolved.yaml" in err[0]


def test_ls_lists_registries(capsys):
    code, _, out = run_cli(capsys, "ls")
    assert code == 0
    for word in ("minilm-l6", "fedit", "full_ft", "equal", "dirichlet", "iid", "shards", "best_channel"):
        assert word in out


def test_validate_ok(capsys):
    code, _, out = run_cli(capsys, "validate", "configs/default.yaml" if __import__("os").path.exists("configs/default.yaml") else "rounds=2")
    assert code == 0 and out.startswith("ok:")


@pytest.mark.parametrize("allocator", ["lyapunov", "tsfa"])
def test_validate_rejects_a_planner_that_cannot_model_the_link(capsys, allocator):
    opts = ["allocation.options.latency_budget_s=4", "strategy.name=soft"] if allocator == "tsfa" else []
    code, err, _ = run_cli(capsys, "validate", f"allocation.name={allocator}", "wireless.link=fixed_rate_outage", *opts)
    assert code == 2 and len(err) == 1 and "wireless.link=error_free" in err[0] and "fix:" in err[0]
    code, _, _ = run_cli(capsys, "validate", f"allocation.name={allocator}", "wireless.link=error_free", *opts)
    assert code == 0


def test_validate_rejects_switching_with_instantaneous_csi_on_a_fixed_rate_link(capsys):
    code, err, _ = run_cli(capsys, "validate", "allocation.name=model_switching", "strategy.name=model_switching",
                           "wireless.csi=instantaneous")
    assert code == 2 and len(err) == 1 and "wireless.csi=statistical" in err[0]


def test_validate_rejects_a_strategy_and_planner_that_do_not_work_together(capsys):
    code, err, _ = run_cli(capsys, "validate", "strategy.name=soft", "allocation.name=model_switching")
    assert code == 2 and len(err) == 1
    assert "strategy.name = 'soft'" in err[0] and "allocation.name = 'model_switching'" in err[0] and "fix:" in err[0]
    assert "tsfa" in err[0] and "strategy.name one of model_switching" in err[0]
    code, err, _ = run_cli(capsys, "validate", "strategy.name=model_switching", "allocation.name=equal")
    assert code == 2 and len(err) == 1 and "needs ['modules']" in err[0]
    code, _, _ = run_cli(capsys, "validate", "strategy.name=soft", "allocation.name=tsfa", "wireless.link=error_free",
                         "allocation.options.latency_budget_s=4")
    assert code == 0


def test_settings_the_components_ignore_are_warned_about(capsys):
    code, err, _ = run_cli(capsys, "validate", "allocation.name=lyapunov", "wireless.link=error_free",
                           "allocation.scheduler=best_channel", "strategy.name=full_ft", "lora.rank=4")
    assert code == 0 and len(err) == 2
    assert err[0].startswith("warning: allocation.scheduler = 'best_channel' is ignored")
    assert err[1].startswith("warning: lora.rank = 4 is ignored by strategy.name = 'full_ft'")
    code, err, _ = run_cli(capsys, "validate", "allocation.scheduler=best_channel")   # the default draws its own
    assert code == 0 and len(err) == 1 and err[0].startswith("warning: allocation.scheduler = 'best_channel' is ignored")
    code, err, _ = run_cli(capsys, "validate", "allocation.name=equal", "allocation.scheduler=best_channel")
    assert code == 0 and err == []   # equal reads it
