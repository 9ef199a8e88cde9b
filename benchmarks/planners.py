#!/usr/bin/env python
"""Benchmark: milliseconds per round of every registered planner at K = 100, 1,000 and 10,000 devices.

Not a test (timings never are): one run, same machine, the median of ``--rounds`` rounds after
one warm-up round (TSFA's offline stage 1 runs in the warm-up, once per run). Each planner sees
the world a run would give it: a seeded cell of K devices (``wireless.channel``), device
profiles, the link of its paper's configs, N = K/10 devices per round (at least 5), and the
strategy's hints where it needs them (SOFT's payload table for TSFA, a four-module set for
model switching). Issue 15 asks for every planner under 100 ms at K = 10,000.

Usage (from the repository root, on an otherwise idle machine)::

    .venv/bin/python benchmarks/planners.py --json docs/results/planners.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

import numpy as np

from airtune.allocation.exchange import Hints, ModuleSetHint, SoftPayloadHint
from airtune.allocation.planner import PlannerContext, RoundInputs, RoundOutcome, make_planner
from airtune.allocation.switching.objective import module_payload_bits
from airtune.config.schema import WirelessConfig
from airtune.lora.soft_payload import soft_payload_table
from airtune.registry import ALLOCATORS
from airtune.wireless.channel import init_channel, step_channel
from airtune.wireless.cost import compute_energy_j, compute_latency_s
from airtune.wireless.devices import sample_device_profiles
from airtune.wireless.link import link_from_config

DIMS = [(384, 384)] * 12          # MiniLM-L6, query and value: the default model's adapted layers
RANK = 8
MODULES = (4, 8, 16, 32)
# the link and options of each planner's paper configs (configs/split, configs/soft, configs/switching)
SETUP: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "equal": ({}, {}),
    "lyapunov": ({"link": "error_free"}, {"deadline_s": 2.0}),
    "tsfa": ({"link": "error_free"}, {"latency_budget_s": 0.5, "candidate_ranks": [4, 8], "rank_policy": "report"}),
    "model_switching": ({"link": "fixed_rate_outage", "csi": "statistical"}, {"deadline_s": 8.0}),
}


VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("tsfa", {"descent_cells": 1, "max_rounds": 8}),
]
"""Faster settings of existing options, timed at the largest K with ``--variants``."""


def world(name: str, K: int, seed: int = 0) -> tuple[Any, Any, PlannerContext, Any]:
    link_kw, _ = SETUP.get(name, ({}, {}))
    n = max(5, K // 10)
    # the bandwidth grows with the devices per round (1 MHz up, 2 MHz down each), so that a device's share, and
    # with it who can meet the deadline, is the same at every K (10 MHz / 20 MHz at K = 100)
    lk = link_from_config(WirelessConfig(**link_kw, uplink_bandwidth_hz=1e6 * n, downlink_bandwidth_hz=2e6 * n))
    rng = np.random.default_rng(seed)
    ch = init_channel(rng, K, 500.0, 10.0)
    dev = sample_device_profiles(rng, K, cycles_per_sample=2e7)
    ctx = PlannerContext(num_devices=K, devices_per_round=n, rounds=100, cpu_freq_hz=dev.cpu_freq_hz,
                         max_power_w=dev.max_power_w, kappa=dev.kappa, data_sizes=rng.integers(20, 200, K).astype(float),
                         link=lk, lora_dims=DIMS, seed=seed, scheduler="random")
    return lk, ch, ctx, dev


def inputs(lk, ch, ctx: PlannerContext, dev, rnd: int) -> RoundInputs:
    K = ctx.num_devices
    ch = step_channel(ch, np.random.default_rng([1, rnd]))
    samples = np.full(K, 80.0)
    table = soft_payload_table(RANK, DIMS).astype(float) + 770 * 32
    hints = Hints(soft_payload=SoftPayloadHint(RANK, table, (1 - np.arange(RANK + 1) / RANK) ** 2),
                  modules=ModuleSetHint(MODULES, module_payload_bits(list(MODULES), DIMS, head_bits=770 * 32)))
    bits = float(table[-1])
    return RoundInputs(round_idx=rnd, rng=np.random.default_rng([2, rnd]), channel_gain=lk.planner_gain(ch),
                       distance_m=ch.distance_m, uplink_bits=np.full(K, bits), downlink_bits=np.full(K, bits),
                       compute_s=compute_latency_s(dev.cycles_per_sample, samples, dev.cpu_freq_hz),
                       compute_energy_j=compute_energy_j(dev.kappa, dev.cycles_per_sample, samples, dev.cpu_freq_hz),
                       hints=hints)


LYAPUNOV_ALL_SIZES_UP_TO = 1000
"""Above this K, lyapunov runs with ``max_devices = N``: with N over 1..K its (N, K) table of
minimum bandwidths alone is K^2 Lambert-W solves (10^8 floats, 0.8 GB, at K = 10,000)."""


def options_for(name: str, K: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    opts = {**SETUP.get(name, ({}, {}))[1], **(extra or {})}
    if name == "lyapunov" and K > LYAPUNOV_ALL_SIZES_UP_TO:
        opts.setdefault("max_devices", max(5, K // 10))
    return opts


def measure(name: str, K: int, rounds: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    lk, ch, ctx, dev = world(name, K)
    opts = options_for(name, K, extra)
    planner = make_planner(ALLOCATORS.get(name), opts, ctx)
    times, selected = [], []
    for rnd in range(rounds + 1):
        inp = inputs(lk, ch, ctx, dev, rnd)
        t0 = time.perf_counter()
        plan = planner.plan(inp)
        elapsed = time.perf_counter() - t0
        z = np.zeros(K)
        energy = np.where(plan.selected, inp.compute_energy_j + 0.01, 0.0)
        planner.observe(inp, plan, RoundOutcome(plan.selected.copy(), plan.selected.astype(float), energy, z, z, 1.0))
        if rnd > 0:                       # round 0 is the warm-up (and TSFA's stage 1)
            times.append(elapsed)
            selected.append(plan.num_selected)
    return {"ms_median": 1e3 * statistics.median(times), "ms_max": 1e3 * max(times),
            "scheduled_mean": float(np.mean(selected)),
            "options": {k: v for k, v in opts.items() if k not in SETUP.get(name, ({}, {}))[1]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--planners", nargs="+", default=None, help="default: every registered planner")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--variants", action="store_true",
                    help="also time the faster option settings at the largest K (tsfa's descent)")
    args = ap.parse_args()
    names = args.planners or ALLOCATORS.names()
    rows = []
    print("| planner | K | ms per round (median) | max | scheduled | options beyond the paper config |")
    print("|---|---:|---:|---:|---:|---|")
    for name in names:
        for K in args.sizes:
            r = {"planner": name, "K": K, **measure(name, K, args.rounds)}
            rows.append(r)
            print(f"| {name} | {K} | {r['ms_median']:.1f} | {r['ms_max']:.1f} | {r['scheduled_mean']:.0f} | "
                  f"{r['options'] or ''} |", flush=True)
    if args.variants:
        K = max(args.sizes)
        for name, extra in VARIANTS:
            if name in names:
                r = {"planner": name, "K": K, **measure(name, K, args.rounds, extra)}
                rows.append(r)
                print(f"| {name} | {K} | {r['ms_median']:.1f} | {r['ms_max']:.1f} | {r['scheduled_mean']:.0f} | "
                      f"{r['options']} |", flush=True)
    if args.json:
        meta = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "rounds": args.rounds}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
