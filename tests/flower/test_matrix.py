"""Every registered strategy and allocator runs through Flower's message API: the same pairs as
``tests/strategies/test_registry_matrix.py`` (from the registries, so a new component is covered
by default), one tiny round in-process and through the ServerApp over a :class:`FakeGrid`, and
the two write the same ``metrics.jsonl`` and ``clients.jsonl``."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("flwr")

from airtune.config import load_config  # noqa: E402
from airtune.experiment import rundir  # noqa: E402
from airtune.experiment.runner import run_experiment  # noqa: E402
from airtune.flower.app_files import write_app  # noqa: E402
from airtune.flower.client_app import make_client_app  # noqa: E402
from airtune.flower.server_app import TRAFFIC, run_server  # noqa: E402
from tests.conftest import tiny_overrides  # noqa: E402
from tests.flower.fake_grid import FakeGrid  # noqa: E402
from tests.flower.test_fake_grid import SHARDS, records  # noqa: E402
from tests.strategies.test_registry_matrix import ALLOCATOR_SETTINGS, pairs  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("strategy,allocator", pairs())
def test_every_pair_runs_through_flower(strategy, allocator, glue_dir, tmp_path):
    overrides = [*tiny_overrides(glue_dir, rounds=1, **{"train.local_steps": 1, "train.num_threads": 1}),
                 f"strategy.name={strategy}", f"allocation.name={allocator}", *ALLOCATOR_SETTINGS.get(allocator, [])]
    cfg = load_config(None, overrides)
    ref = tmp_path / "ref"
    rundir.prepare(cfg, ref)
    run_experiment(cfg, ref)
    app_dir = write_app(tmp_path / "app", cfg)
    out = tmp_path / "flower"
    run_server(FakeGrid(make_client_app(app_dir), SHARDS, {"out": str(out)}), {"out": str(out)}, app_dir)
    for name in (rundir.METRICS, rundir.CLIENTS):
        assert records(out / name) == records(ref / name), name
    traffic = json.loads((out / TRAFFIC).read_text())     # the updates did travel as Flower messages
    assert traffic["messages"] == traffic["replies"] > 0 and traffic["up_array_bytes"] > 0
