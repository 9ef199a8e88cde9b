"""Per-device LoRA ranks: every rule of assign_device_ranks, and the config checks around them."""

from __future__ import annotations

import numpy as np
import pytest

from airtune.config import load_config
from airtune.errors import ConfigError
from airtune.experiment.seeds import rng
from airtune.lora.ranks import assign_device_ranks


def test_uniform_rank_is_todays_behaviour():
    out = assign_device_ranks("uniform_rank", 5, rng(0, "ranks"), rank=8)
    assert out.dtype == np.int64 and out.tolist() == [8] * 5


def test_tier_maps_memory_tiers_to_sorted_set_clipped():
    tiers = np.array([0, 1, 2, 2, 0])
    out = assign_device_ranks("tier", 5, rng(0, "ranks"), rank=8, rank_set=[8, 2, 4], memory_tier=tiers)
    assert out.tolist() == [2, 4, 8, 8, 2]
    short = assign_device_ranks("tier", 5, rng(0, "ranks"), rank=8, rank_set=[16, 4], memory_tier=tiers)
    assert short.tolist() == [4, 16, 16, 16, 4]  # tier 2 beyond a 2-rank set gets the largest


def test_list_is_taken_verbatim_and_checked():
    assert assign_device_ranks("list", 3, rng(0, "ranks"), rank=8, rank_list=[2, 8, 4]).tolist() == [2, 8, 4]
    with pytest.raises(ValueError, match="one rank per device"):
        assign_device_ranks("list", 4, rng(0, "ranks"), rank=8, rank_list=[2, 8, 4])


def test_random_set_is_seeded_and_uniform():
    a = assign_device_ranks("random_set", 3000, rng(7, "ranks"), rank=8, rank_set=[2, 4, 8])
    b = assign_device_ranks("random_set", 3000, rng(7, "ranks"), rank=8, rank_set=[2, 4, 8])
    assert np.array_equal(a, b) and set(a.tolist()) == {2, 4, 8}
    shares = np.array([(a == r).mean() for r in (2, 4, 8)])
    assert np.allclose(shares, 1 / 3, atol=0.04)


def test_heavy_tail_gives_most_devices_small_ranks():
    out = assign_device_ranks("heavy_tail", 4000, rng(1, "ranks"), rank=8, rank_set=[2, 4, 8])
    shares = np.array([(out == r).mean() for r in (2, 4, 8)])
    expected = np.array([1, 1 / 2, 1 / 3]) / (1 + 1 / 2 + 1 / 3)  # Zipf, exponent 1
    assert np.allclose(shares, expected, atol=0.03) and shares[0] > 0.5


def test_unknown_mode_and_bad_sets():
    with pytest.raises(ValueError, match="unknown rank mode"):
        assign_device_ranks("tiers", 2, rng(0, "ranks"), rank=8)
    with pytest.raises(ValueError, match="memory_tier"):
        assign_device_ranks("tier", 2, rng(0, "ranks"), rank=8)


def errors(*overrides: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(None, list(overrides))
    return info.value.errors


def test_config_rank_list_length_names_both_fields():
    (line,) = errors("lora.device_ranks=list", "lora.rank_list=[2,4,8]", "num_devices=4")
    assert line.startswith("lora.rank_list = [2, 4, 8]: has 3 entries but num_devices = 4; fix: ")
    cfg = load_config(None, ["lora.device_ranks=list", "lora.rank_list=[2,4,8,8]", "num_devices=4",
                             "devices_per_round=2"])
    assert cfg.lora.rank_list == [2, 4, 8, 8]


def test_config_rank_list_only_with_list_mode():
    (line,) = errors("lora.device_ranks=list")
    assert line.startswith("lora.rank_list = None: is required when device_ranks = 'list'")
    (line,) = errors("lora.rank_list=[2]", "num_devices=1", "devices_per_round=1")
    assert "set lora.device_ranks=list, or remove lora.rank_list" in line
    (line,) = errors("lora.rank_set=[2,0]")
    assert line.startswith("lora.rank_set[1] = 0: must be >= 1")


def test_single_rank_strategy_rejects_heterogeneous_ranks():
    from airtune.experiment.validate import registry_errors

    (line,) = registry_errors(load_config(None, ["lora.device_ranks=random_set"]))
    assert line.startswith("lora.device_ranks = 'random_set': strategy 'fedit' trains one shared rank")
    assert "hetlora" in line and "fix: set lora.device_ranks=uniform_rank" in line
    assert registry_errors(load_config(None, ["lora.device_ranks=random_set", "strategy.name=flora"])) == []
    assert registry_errors(load_config(None, ["lora.device_ranks=tier", "strategy.name=full_ft"])) == []
