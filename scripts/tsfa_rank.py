#!/usr/bin/env python
"""Print TSFA's stage-1 (offline) rank choice for a config, before training.

Builds the run (data, model, devices, channel at round 0) exactly as ``airtune run`` would, runs
stage 1 of the ``tsfa`` allocator (``allocation/tsfa/planner.py``) and prints the candidate table
and the chosen rank. Under ``rank_policy: adopt`` (the default) the run trains the printed rank;
under ``enforce``/``report`` the script exits 1 when it differs from ``lora.rank``.

Usage (repository root)::

    .venv/bin/python scripts/tsfa_rank.py configs/soft/sst2-soft_tsfa.yaml [dotted.overrides ...]
"""

from __future__ import annotations

import sys

from airtune.config import load_config
from airtune.experiment.runner import build_planner, round_inputs
from airtune.experiment.seeds import rng
from airtune.experiment.setup import build
from airtune.wireless.channel import step_channel


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    cfg = load_config(argv[0], argv[1:])
    if cfg.allocation.name != "tsfa":
        print(f"allocation.name = {cfg.allocation.name!r}: this script needs allocation.name=tsfa")
        return 2
    s = build(cfg)
    server = s.strategy.init_state(s.initial_state)
    ch = step_channel(s.channel, rng(cfg.seed, "channel", 0), cfg.wireless.fading)
    planner = build_planner(s)
    choice = planner.run_stage1(round_inputs(s, server, 0, ch))
    cols = ["candidate_ranks", "expected_latency_s", "kept_components", "kept_latency_s", "rank_term",
            "sparsification_term", "bound", "feasible"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---:|" * len(cols))
    for row in choice.table():
        print("| " + " | ".join(f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in cols) + " |")
    print(f"stage 1: {choice.message}; chosen rank {choice.rank}, lora.rank {cfg.lora.rank}")
    return 0 if choice.rank == cfg.lora.rank or planner.options.rank_policy == "adopt" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
