"""Wall time of one round of the switching planner (Algorithm 2) for K devices (not a test).

Synthetic rounds as in scripts/switching_alloc.py: N = K/10 participants at most, deadline 8 s,
adaptive power, eta = 0.1 and the planner's default V (null: 100 K for the default `risk: theorem`
bound, whose per-device weight is about 1/K, so that the plan is not empty at large K). Two
settings of the same planner:
  * "paper":   both tiers of the energy bandwidth search by bisection;
  * "default": Illinois false position in both tiers.
(These synthetic rounds use the link without an upload slot; the slot link's Algorithm 1 is
switching/bandwidth_reliability.py.)
Median of 5 rounds after one warm-up; prints ms per round, the ratio, outer iterations, devices
scheduled and the mean objective J of each setting (lower is better). Run on an idle machine:
    flock /tmp/airtune-cpu.lock .venv/bin/python benchmarks/switching_alloc.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from switching_alloc import context, distances, round_inputs  # noqa: E402

from airtune.allocation.switching.planner import SwitchingPlanner  # noqa: E402

SETTINGS = {"paper": {"bandwidth_search": "bisection"}, "default": {}}


def measure(K: int, switching: str, extra: dict) -> tuple[float, float, float, float]:
    ctx = context(K, K // 10)
    pl = SwitchingPlanner({"switching": switching, "deadline_s": 8.0, "energy_coefficient": 0.1, **extra}, ctx)
    dist = distances(K)
    times, iters, sel, obj = [], [], [], []
    for rnd in range(6):
        inp = round_inputs(ctx, rnd, dist)
        t0 = time.perf_counter()
        plan = pl.plan(inp)
        times.append(time.perf_counter() - t0)
        iters.append(plan.iterations)
        sel.append(plan.num_selected)
        obj.append(plan.objective)
    return 1e3 * float(np.median(times[1:])), float(np.mean(iters)), float(np.mean(sel)), float(np.mean(obj))


print("| K | switching | paper (ms) | default (ms) | speed-up | power-bandwidth iterations paper / default "
      "| scheduled | J paper / default |")
print("|---:|---|---:|---:|---:|---|---:|---|")
for K in (100, 1000):
    for switching in ("online", "greedy", "one_shot"):
        slow, fast = (measure(K, switching, SETTINGS[s]) for s in ("paper", "default"))
        print(f"| {K} | {switching} | {slow[0]:.0f} | {fast[0]:.0f} | {slow[0] / fast[0]:.1f}x | "
              f"{slow[1]:.1f} / {fast[1]:.1f} | {fast[2]:.0f} | {slow[3]:.3f} / {fast[3]:.3f} |")
