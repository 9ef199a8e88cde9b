"""``train.skip_lost_updates``: pricing the round before training and not computing the updates
the channel loses changes nothing a run reports (experiment/runner.py).

Each strategy that declares ``bits_known_before_training`` runs the same tiny real experiment
with the option on and off. Every metric of every round (accuracy, bits, time, energy, who was
lost) and every per-device row agree exactly (``train_loss`` is logged for delivered updates
only, in both modes). A counting engine checks that the lost updates really were skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airtune.config import load_config
from airtune.experiment.runner import make_engine, run_experiment
from airtune.registry import STRATEGIES
from airtune.training.engine import ClientTask
from tests.conftest import tiny_overrides

# A high decoding threshold, so that the tiny run loses some uploads and delivers others.
LOSSY = {"wireless.sinr_threshold_db": 10.0, "rounds": 3, "devices_per_round": 3}


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run(glue_dir: Path, out: Path, skip: bool, extra: dict) -> tuple[list[dict], list[dict], int]:
    cfg = load_config(None, tiny_overrides(glue_dir, **LOSSY, **extra, **{"train.skip_lost_updates": skip}))
    trained = []

    def counting(s):
        engine = make_engine(s)
        inner = engine.run

        def run_tasks(tasks):
            trained.extend(t.device for t in tasks)
            return inner(tasks)

        engine.run = run_tasks
        return engine

    run_experiment(cfg, out, engine_factory=counting)
    return rows(out / "metrics.jsonl"), rows(out / "clients.jsonl"), len(trained)


CASES = [
    pytest.param({"strategy.name": "fedit"}, id="fedit"),
    pytest.param({"strategy.name": "ffa_lora", "lora.device_ranks": "random_set"}, id="ffa_lora",
                 marks=pytest.mark.slow),
    pytest.param({"strategy.name": "flexlora", "lora.device_ranks": "random_set"}, id="flexlora",
                 marks=pytest.mark.slow),
    pytest.param({"strategy.name": "full_ft", "train.lr": 5e-5}, id="full_ft", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("extra", CASES)
def test_skipping_lost_updates_changes_no_reported_number(extra, glue_dir, tmp_path):
    m_on, c_on, trained_on = run(glue_dir, tmp_path / "on", True, extra)
    m_off, c_off, trained_off = run(glue_dir, tmp_path / "off", False, extra)
    lost = sum(len(r["lost"]) for r in m_off)
    delivered = sum(len(r["delivered"]) for r in m_off)
    assert lost > 0 and delivered > 0, "the case must lose some uploads and deliver others"
    assert trained_off == lost + delivered and trained_on == delivered    # the lost were not trained
    for on, off in zip(m_on, m_off, strict=True):
        on.pop("wall_time_s"), off.pop("wall_time_s")
        assert on == off
    assert c_on == c_off


@pytest.mark.parametrize("name", ["soft", "hetlora", "split_fedlora", "topk_lora", "svd_lora", "model_switching", "flora"])
def test_strategies_whose_bits_follow_the_update_train_every_device(name):
    cls = STRATEGIES.get(name)
    assert not cls.bits_known_before_training
    with pytest.raises(ValueError, match="skip_lost_updates=false"):
        cls.bits_before_training(cls.__new__(cls), ClientTask(0, {}, 1, 0))
