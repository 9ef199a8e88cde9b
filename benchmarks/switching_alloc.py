"""Wall time of one round of the switching planner (Algorithm 2) for K devices (not a test).

Synthetic round as in scripts/switching_alloc.py (N = K/10 participants, deadline 8 s, adaptive
power, dual ascent); median of 5 rounds after one warm-up. Run:
    flock /tmp/airtune-cpu.lock .venv/bin/python benchmarks/switching_alloc.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from switching_alloc import context, distances, round_inputs  # noqa: E402

from airtune.allocation.switching_planner import SwitchingPlanner  # noqa: E402

for K in (100, 1000):
    for switching in ("dual_ascent", "greedy", "one_shot"):
        ctx = context(K, K // 10)
        pl = SwitchingPlanner({"switching": switching, "deadline_s": 8.0, "energy_coefficient": 1.0}, ctx)
        dist = distances(K)
        times, iters = [], []
        for rnd in range(6):
            inp = round_inputs(ctx, rnd, dist)
            t0 = time.perf_counter()
            plan = pl.plan(inp)
            times.append(time.perf_counter() - t0)
            iters.append(plan.iterations)
        print(f"K={K:5d} {switching:12s} median {1e3 * np.median(times[1:]):7.1f} ms per round "
              f"(max {1e3 * max(times[1:]):.1f} ms), outer iterations {np.mean(iters):.1f}")
