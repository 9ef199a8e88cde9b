"""Every registered strategy runs one tiny round end to end with a compatible allocator, and
every registered allocator with a compatible strategy: the matrix comes from the registries, so
a new component is covered by default (a plugin's too, when one is installed)."""

from __future__ import annotations

import json

import pytest

from airtune.cli import main
from airtune.experiment.validate import pair_errors
from airtune.registry import ALLOCATORS, STRATEGIES
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.slow
ALLOCATOR_SETTINGS = {"tsfa": ["allocation.options.latency_budget_s=100", "wireless.link=error_free"],
                      "lyapunov": ["wireless.link=error_free"]}


def partner(strategy: str) -> str:
    names = ["equal", *[a for a in ALLOCATORS.names() if a != "equal"]]
    return next(a for a in names if not pair_errors(strategy, a))


def pairs() -> list[tuple[str, str]]:
    out = [(s, partner(s)) for s in STRATEGIES.names()]
    covered = {a for _, a in out}
    for a in ALLOCATORS.names():
        if a not in covered:
            out.append((next(s for s in STRATEGIES.names() if not pair_errors(s, a)), a))
    return out


@pytest.mark.parametrize("strategy,allocator", pairs())
def test_every_registered_component_runs_a_round(strategy, allocator, glue_dir, tmp_path):
    out = tmp_path / "run"
    args = [*tiny_overrides(glue_dir, rounds=1, **{"train.local_steps": 1, "train.num_threads": 1}),
            f"strategy.name={strategy}", f"allocation.name={allocator}", *ALLOCATOR_SETTINGS.get(allocator, [])]
    assert main(["run", "--quiet", "--out", str(out), *args]) == 0
    (rec,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rec["round"] == 0 and rec["accuracy"] is not None and rec["selected"]
    assert (out / "checkpoint" / "state.json").exists() and (out / "summary.json").exists()
