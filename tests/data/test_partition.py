"""Partitioners: disjoint complete covers, sizes, seeding, label skew, and failure modes."""

from __future__ import annotations

import numpy as np
import pytest

from airtune.data.partition import check_partitions, describe, dirichlet, iid, label_counts, partition, shards
from airtune.errors import ConfigError, DataError
from airtune.registry import PARTITIONERS

LABELS = np.random.default_rng(123).integers(0, 4, size=2_000)  # 4 classes, 2,000 samples
PARAMS = {"iid": {}, "dirichlet": {"alpha": 0.5, "min_partition_size": 5}, "shards": {"shards_per_device": 2}}


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_registered_under_their_names():
    assert {"iid", "dirichlet", "shards"} <= set(PARTITIONERS.names())
    assert PARTITIONERS.get("iid") is iid and PARTITIONERS.get("dirichlet") is dirichlet
    assert PARTITIONERS.get("shards") is shards


@pytest.mark.parametrize("method", sorted(PARAMS))
def test_disjoint_complete_cover_and_determinism(method):
    fn = PARTITIONERS.get(method)
    parts = fn(LABELS, 10, _rng(1), **PARAMS[method])
    assert len(parts) == 10
    assert all(p.dtype == np.int64 for p in parts)
    allidx = np.concatenate(parts)
    assert allidx.size == LABELS.size and np.array_equal(np.sort(allidx), np.arange(LABELS.size))
    check_partitions(parts, LABELS.size)
    again = fn(LABELS, 10, _rng(1), **PARAMS[method])
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = fn(LABELS, 10, _rng(2), **PARAMS[method])
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other))


def test_common_signature_ignores_foreign_params():
    parts = partition("iid", LABELS, 7, _rng(), alpha=0.1, shards_per_device=3)
    assert sorted(len(p) for p in parts) == [285, 285] + [286] * 5


def test_iid_sizes_and_balance():
    parts = iid(LABELS, 8, _rng())
    assert {len(p) for p in parts} == {250}
    frac = label_counts(parts, LABELS, 4) / 250
    assert np.abs(frac - np.bincount(LABELS) / LABELS.size).max() < 0.1


def test_shards_give_few_classes_per_device():
    parts = shards(LABELS, 20, _rng(), shards_per_device=2)
    assert {len(p) for p in parts} == {100}  # 40 shards of 50
    classes_per_device = (label_counts(parts, LABELS, 4) > 0).sum(axis=1)
    assert classes_per_device.mean() <= 2.5  # 2 shards; only 3 of 40 shards straddle a label boundary
    with pytest.raises(DataError, match="shards_per_device"):
        shards(LABELS[:30], 20, _rng(), shards_per_device=2)


def _mean_max_frac(parts: list[np.ndarray]) -> float:
    counts = label_counts(parts, LABELS, 4)
    return float((counts.max(axis=1) / counts.sum(axis=1)).mean())


def test_dirichlet_small_alpha_is_skewed():
    skewed = np.mean([_mean_max_frac(dirichlet(LABELS, 10, _rng(s), alpha=0.1, min_partition_size=5)) for s in range(3)])
    flat = np.mean([_mean_max_frac(dirichlet(LABELS, 10, _rng(s), alpha=100.0, min_partition_size=5)) for s in range(3)])
    assert skewed > 0.6 > 0.35 > flat


@pytest.mark.parametrize("self_balancing", [False, True])
def test_dirichlet_min_partition_size_respected(self_balancing):
    parts = dirichlet(LABELS, 20, _rng(), alpha=0.3, min_partition_size=30, self_balancing=self_balancing)
    assert min(len(p) for p in parts) >= 30
    check_partitions(parts, LABELS.size)


def test_dirichlet_impossible_raises_data_error():
    with pytest.raises(DataError, match="min_partition_size=300"):  # 10 x 300 > 2,000: caught up front
        dirichlet(LABELS, 10, _rng(), alpha=0.5, min_partition_size=300)
    with pytest.raises(DataError, match=r"no draw in 50 tries.*alpha=0\.01.*fix: raise alpha"):
        dirichlet(LABELS[:100], 10, _rng(), alpha=0.01, min_partition_size=9, max_tries=50)


def test_bad_parameters_are_config_errors():
    with pytest.raises(ConfigError, match="alpha"):
        dirichlet(LABELS, 10, _rng(), alpha=0.0, min_partition_size=1)
    with pytest.raises(ConfigError, match="num_devices"):
        iid(LABELS, 0, _rng())
    with pytest.raises(DataError, match="devices"):
        iid(LABELS[:3], 5, _rng())


def test_label_counts_and_describe():
    labels = np.array([0, 0, 1, 1, 1, 2])
    parts = [np.array([0, 1, 2]), np.array([3, 4, 5])]
    assert label_counts(parts, labels, 3).tolist() == [[2, 1, 0], [0, 2, 1]]
    line = describe(parts, labels, 3, name="toy")
    assert line.startswith("toy: 2 devices, 6 samples") and "\n" not in line
    with pytest.raises(DataError, match="missing"):
        check_partitions([np.array([0, 1])], 3)
