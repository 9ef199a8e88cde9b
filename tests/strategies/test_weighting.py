"""strategy.weighting: uniform weights give the plain mean of the delivered updates, data_size the
FedAvg mean; the runner applies it for every strategy (strategies/weighting.py)."""

from __future__ import annotations

import json

import pytest
import torch

from airtune.cli import main
from airtune.strategies.base import ServerState
from airtune.strategies.fedit import FedIT
from airtune.strategies.weighting import weighted
from airtune.training.engine import ClientUpdate


def _updates():
    return [ClientUpdate(d, {"classifier.weight": torch.full((2, 2), float(v))}, n, 0.1)
            for d, (v, n) in enumerate([(1.0, 30), (4.0, 10), (10.0, 60)])]


def test_weighted_sets_the_aggregation_weight():
    ups = _updates()
    assert weighted(ups, "data_size") is ups
    uni = weighted(ups, "uniform")
    assert [u.num_samples for u in uni] == [1, 1, 1]
    assert [u.device for u in uni] == [0, 1, 2] and uni[2].state is ups[2].state
    assert [u.num_samples for u in ups] == [30, 10, 60]            # the originals are untouched
    with pytest.raises(ValueError, match="strategy.weighting = 'equal'.*fix"):
        weighted(ups, "equal")  # type: ignore[arg-type]


def test_fedit_uniform_is_the_plain_mean_and_data_size_the_fedavg_mean():
    server = ServerState({"classifier.weight": torch.zeros(2, 2)})
    strat = FedIT()
    for weighting, expect in (("uniform", (1 + 4 + 10) / 3), ("data_size", (30 * 1 + 10 * 4 + 60 * 10) / 100)):
        new, _ = strat.aggregate(0, server, weighted(_updates(), weighting), {0, 1, 2})
        torch.testing.assert_close(new.tensors["classifier.weight"], torch.full((2, 2), expect))
    # only delivered updates count: device 2 lost -> mean of 1 and 4
    new, _ = strat.aggregate(0, server, weighted(_updates(), "uniform"), {0, 1})
    torch.testing.assert_close(new.tensors["classifier.weight"], torch.full((2, 2), 2.5))


def test_config_refuses_an_unknown_weighting():
    from airtune.config import load_config
    from airtune.errors import ConfigError

    with pytest.raises(ConfigError, match="weighting"):
        load_config(None, ["strategy.weighting=equal"])


@pytest.mark.slow
def test_uniform_weights_and_logit_adjustment_change_a_run(glue_dir, tmp_path):
    from tests.conftest import tiny_overrides

    # error-free links: both scheduled updates arrive, so their weights matter
    base = tiny_overrides(glue_dir, rounds=2, **{"train.local_steps": 2, "train.num_threads": 1,
                                                 "wireless.link": "error_free"})
    before = torch.get_num_threads()
    try:
        runs = {}
        pinned = ["strategy.weighting=data_size", "train.loss=cross_entropy"]   # not the defaults since issue 17
        for name, extra in (("ref", []), ("uniform", ["strategy.weighting=uniform"]),
                            ("adjusted", ["train.loss=logit_adjusted"])):
            assert main(["run", "--quiet", "--out", str(tmp_path / name), *base, *pinned, *extra]) == 0
            runs[name] = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    finally:
        torch.set_num_threads(before)
    ref = runs["ref"]
    for name in ("uniform", "adjusted"):
        rows = runs[name]
        assert [r["uplink_bits"] for r in rows] == [r["uplink_bits"] for r in ref]   # same radio
        assert all(r["aggregated"] == 2 for r in rows)
        assert rows[-1]["loss"] != ref[-1]["loss"], name                              # different model
