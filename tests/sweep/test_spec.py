"""Sweep specs: schemes x grid x seeds expand into validated runs with stable ids; every problem
of every run is reported at once with the run it belongs to."""

from __future__ import annotations

import pytest
import yaml

from airtune.config import Config
from airtune.errors import ConfigError
from airtune.sweep.spec import expand, load_spec


def write(tmp_path, **spec):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "t", **spec}))
    return path


def test_expand_schemes_grid_and_seeds(tmp_path):
    path = write(tmp_path, overrides=["rounds=2"], schemes={"ideal": [], "topk": ["strategy.name=topk_lora"]},
                 grid={"num_devices": [4, 8]}, seeds=[0, 3], threads_per_worker=1)
    runs = expand(*load_spec(path))
    assert len(runs) == 2 * 2 * 2
    ids = [r.run_id for r in runs]
    assert ids[0] == "ideal__num_devices=4__seed0" and "topk__num_devices=8__seed3" in ids and len(set(ids)) == 8
    r = next(r for r in runs if r.run_id == "topk__num_devices=8__seed3")
    assert r.config["strategy"]["name"] == "topk_lora" and r.config["num_devices"] == 8
    assert r.config["seed"] == 3 and r.config["rounds"] == 2 and r.config["train"]["num_threads"] == 1
    assert r.config["name"] == r.run_id


def test_base_config_is_relative_to_the_spec(tmp_path):
    (tmp_path / "base.yaml").write_text("rounds: 7\n")
    runs = expand(*load_spec(write(tmp_path, base="base.yaml")))
    assert [r.config["rounds"] for r in runs] == [7]
    with pytest.raises(ConfigError, match="not found"):
        load_spec(write(tmp_path, base="missing.yaml"))


def test_every_invalid_run_is_reported_at_once(tmp_path):
    path = write(tmp_path, schemes={"a": ["lora.rank=-1"], "b": ["strategy.name=nope"]}, seeds=[0, 1])
    with pytest.raises(ConfigError) as info:
        expand(*load_spec(path))
    lines = info.value.errors
    assert len(lines) == 4 and lines[0].startswith("a__seed0: lora.rank") and any(l.startswith("b__seed1:") for l in lines)


@pytest.mark.parametrize("bad", [{"seeds": [1, 1]}, {"schemes": {}}, {"grid": {"rounds": []}}, {"unknown": 1},
                                 {"schemes": {"a__b": []}}])
def test_bad_specs_are_one_line_errors_naming_the_field(tmp_path, bad):
    with pytest.raises(ConfigError) as info:
        load_spec(write(tmp_path, **bad))
    assert all("sweep spec" in line for line in info.value.errors)


def test_a_set_expands_in_place_and_an_unknown_set_is_one_line(tmp_path):
    path = write(tmp_path, sets={"small": ["num_devices=4", "devices_per_round=2"]},
                 schemes={"a": ["rounds=3", "@small", "devices_per_round=1"], "b": ["@small"]})
    spec, base = load_spec(path)
    assert spec.scheme_overrides("a") == ["rounds=3", "num_devices=4", "devices_per_round=2", "devices_per_round=1"]
    runs = {r.scheme: r for r in expand(spec, base)}
    assert (runs["a"].config["num_devices"], runs["a"].config["devices_per_round"]) == (4, 1)  # later wins
    assert (runs["b"].config["num_devices"], runs["b"].config["devices_per_round"], runs["b"].config["rounds"]) == (4, 2, Config().rounds)
    with pytest.raises(ConfigError) as info:
        load_spec(write(tmp_path, sets={"small": []}, schemes={"a": ["@smal"]}))
    assert len(info.value.errors) == 1 and "'@smal'" in info.value.errors[0] and "@small" in info.value.errors[0]
