"""Allocation-only sweeps of the switching paradigm (no training): docs/results/switching.md.

(a) Algorithm 1 (two-tier bandwidth bisection): iterations and resulting upload latency vs its
    tolerance and the number of devices;
(b) adaptive vs maximum power: mean power, transmit energy, outage and uplink airtime of the
    full planner (Algorithm 2) over 10 rounds, across channel conditions (PPP interferer density)
    and across the energy-efficiency coefficient eta.

Synthetic rounds with the simulator's defaults (500 m cell, 128.1 + 37.6 log10 d_km path loss,
Rayleigh fading, 10 MHz, 23 dBm, MiniLM-L6 LoRA payloads of ranks 4/8/16/32, 5e9 cycles per round
at U[0.5, 2] GHz). Seeded; prints markdown tables and writes PNGs.
Run: .venv/bin/python scripts/switching_alloc.py docs/results/switching
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from airtune.allocation.exchange import Hints, ModuleSetHint
from airtune.allocation.planner import PlannerContext, RoundInputs, RoundOutcome  # noqa: E402
from airtune.allocation.switching.bandwidth_tiers import bandwidth_for_switching  # noqa: E402
from airtune.allocation.switching.objective import module_payload_bits  # noqa: E402
from airtune.allocation.switching.planner import SwitchingPlanner  # noqa: E402
from airtune.config.schema import WirelessConfig  # noqa: E402
from airtune.wireless.channel import shannon_rate_bps  # noqa: E402
from airtune.wireless.link import link_from_config  # noqa: E402

DIMS = [(384, 384)] * 12
RANKS = [4, 8, 16, 32]
S = module_payload_bits(RANKS, DIMS, head_bits=770 * 32)
N0 = 10 ** (-17.4) / 1000
B = 10e6


def context(K: int, n: int, density: float = 5e-7, seed: int = 0) -> PlannerContext:
    rng = np.random.default_rng(seed)
    return PlannerContext(num_devices=K, devices_per_round=n, rounds=20, cpu_freq_hz=rng.uniform(0.5e9, 2e9, K),
                          max_power_w=np.full(K, 0.2), kappa=1e-28, data_sizes=rng.integers(10, 80, K).astype(float),
                          link=link_from_config(WirelessConfig(interferer_density_per_m2=density, uplink_bandwidth_hz=B)),
                          lora_dims=DIMS, seed=seed,
                          scheduler="random")


def round_inputs(ctx: PlannerContext, rnd: int, dist: np.ndarray) -> RoundInputs:
    rng = np.random.default_rng(1000 + rnd)
    K = ctx.num_devices
    h = 10 ** (-(128.1 + 37.6 * np.log10(dist / 1000)) / 10) * rng.exponential(1.0, K)
    return RoundInputs(round_idx=rnd, rng=rng, channel_gain=h, distance_m=dist, uplink_bits=np.zeros(K),
                       downlink_bits=np.zeros(K), compute_s=5e9 / ctx.cpu_freq_hz,
                       compute_energy_j=ctx.kappa * 5e9 * ctx.cpu_freq_hz ** 2,
                       hints=Hints(modules=ModuleSetHint(ranks=tuple(RANKS), payload_bits=S)))


def distances(K: int, seed: int = 0) -> np.ndarray:
    return np.sqrt(np.random.default_rng(seed + 7).uniform(10 ** 2, 500 ** 2, K))


def sweep_algorithm1(out: Path) -> None:
    """Iterations and latency of the two-tier search vs tolerance, K and the root finder."""
    print("\n### Algorithm 1 (two-tier bandwidth search) vs tolerance, K and root finder\n")
    print("| K | search | tol | outer iterations | inner iterations | wall ms | max upload latency (s) "
          "| weighted energy (J) |")
    print("|---|---|---|---|---|---|---|---|")
    tols = [1e-2, 1e-4, 1e-6, 1e-8, 1e-10, 1e-12]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for K in (10, 100, 1000):
        rng = np.random.default_rng(K)
        dist = distances(K)
        h = 10 ** (-(128.1 + 37.6 * np.log10(dist / 1000)) / 10) * rng.exponential(1.0, K)
        x = np.eye(4, dtype=bool)[rng.integers(0, 4, K)]
        q = rng.uniform(0.1, 2.0, K)
        p = np.full(K, 0.2)
        for search, style in (("bisection", "o-"), ("illinois", "s--")):
            outer, lat = [], []
            for tol in tols:
                t0 = time.perf_counter()
                res = bandwidth_for_switching(x, S, q, p, h, N0, B, rate_model="shannon", tol=tol, search=search)
                ms = 1e3 * (time.perf_counter() - t0)
                rate = shannon_rate_bps(res.bandwidth_hz, p, h, N0)
                latency = float(np.max(x.astype(float) @ S / rate))
                outer.append(res.iterations_outer)
                lat.append(latency)
                print(f"| {K} | {search} | {tol:g} | {res.iterations_outer} | {res.iterations_inner} | {ms:.1f} | "
                      f"{latency:.4g} | {res.objective:.6g} |")
            ax[0].semilogx(tols, outer, style, label=f"K={K}, {search}")
            ax[1].semilogx(tols, lat, style, label=f"K={K}, {search}")
    ax[0].set(xlabel="tolerance on B - sum b", ylabel="outer iterations", title="Algorithm 1: iterations")
    ax[1].set(xlabel="tolerance on B - sum b", ylabel="max upload latency (s)", title="Algorithm 1: latency")
    for a in ax:
        a.invert_xaxis()
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "algorithm1.png", dpi=110)
    plt.close(fig)


def simulate(ctx: PlannerContext, options: dict, rounds: int = 10) -> dict:
    """Run the planner over ``rounds`` synthetic rounds; delivered = expected (success probability)."""
    pl = SwitchingPlanner(options, ctx)
    dist = distances(ctx.num_devices)
    power, tx_j, airtime, succ_all, bits, outer = [], 0.0, 0.0, [], 0.0, []
    for rnd in range(rounds):
        inp = round_inputs(ctx, rnd, dist)
        plan = pl.plan(inp)
        sel = plan.selected
        s_k = np.where(sel, np.where(plan.directives.modules.modules >= 0, S[np.maximum(plan.directives.modules.modules, 0)], 0.0), 0.0)
        rate = ctx.link.uplink_rate_bps(plan.bandwidth_hz, plan.power_w, inp.channel_gain)   # the charged rate
        t_up = np.divide(s_k, rate, out=np.zeros(len(sel)), where=rate > 0)
        succ = np.where(sel, pl.radio.success(dist, plan.power_w, plan.bandwidth_hz, inp.channel_gain), 0.0)
        energy = np.where(sel, inp.compute_energy_j + plan.power_w * t_up, 0.0)
        pl.observe(inp, plan, RoundOutcome(sel & (succ > 0.5), succ, energy, t_up, s_k, float(t_up.max())))
        power += plan.power_w[sel].tolist()
        tx_j += float(np.sum(plan.power_w * t_up))
        airtime += float(np.sum(t_up))
        succ_all += succ[sel].tolist()
        bits += float(s_k.sum())
        outer.append(plan.iterations)
    return {"power_w": float(np.mean(power)), "tx_energy_j": tx_j / rounds, "airtime_s": airtime / rounds,
            "success": float(np.mean(succ_all)), "mbit": bits / rounds / 1e6, "outer": float(np.mean(outer))}


def sweep_power(out: Path) -> None:
    print("\n### Adaptive vs maximum power (Algorithm 2, K=100, N=10, 10 rounds)\n")
    print("| sweep | value | power | mean power (W) | tx energy / round (J) | uplink airtime / round (s) | "
          "mean success prob. | uplink Mbit / round | outer iterations |")
    print("|---|---|---|---|---|---|---|---|---|")
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    for col, (name, values) in enumerate((("interferer density (1/m^2)", [1e-7, 5e-7, 2e-6, 5e-6]),
                                          ("energy-efficiency coefficient eta", [0.0, 1.0, 5.0, 20.0]))):
        for mode in ("adaptive", "max"):
            res = []
            for v in values:
                density = v if col == 0 else 5e-7
                eta = v if col == 1 else 1.0
                ctx = context(100, 10, density=density)
                r = simulate(ctx, {"power": mode, "energy_coefficient": eta, "deadline_s": 8.0})
                res.append(r)
                print(f"| {name} | {v:g} | {mode} | {r['power_w']:.4f} | {r['tx_energy_j']:.4f} | "
                      f"{r['airtime_s']:.3f} | {r['success']:.3f} | {r['mbit']:.2f} | {r['outer']:.1f} |")
            ax[col].semilogx(values if col == 0 else np.array(values) + 0.1, [r["tx_energy_j"] for r in res],
                             "o-" if mode == "adaptive" else "s--", label=f"{mode}: tx energy (J)")
            if col == 0:
                ax[2].semilogx(values, [r["success"] for r in res], "o-" if mode == "adaptive" else "s--",
                               label=f"{mode}")
        ax[col].set(xlabel=name + (" (+0.1)" if col == 1 else ""), ylabel="transmit energy per round (J)")
        ax[col].legend()
    ax[2].set(xlabel="interferer density (1/m^2)", ylabel="mean success probability")
    ax[2].legend()
    fig.tight_layout()
    fig.savefig(out / "power.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results/switching")
    out.mkdir(parents=True, exist_ok=True)
    sweep_algorithm1(out)
    sweep_power(out)
