"""Plots of the three papers' mechanism checks (issue 14, item 5), allocation-only: no training.

Each part regenerates the data of a mechanism test, prints the numbers it plots and saves one PNG:

- ``split`` (paper 1, ``tests/allocation/split_fed/test_mechanism.py``): devices scheduled per round
  N_t against the round weight omega_t (geometric weights vs the uniform control), and each device's
  running long-term energy over the calibrated budget. -> docs/results/split/mechanism.png
- ``soft`` (paper 2, ``tests/allocation/tsfa/test_mechanism.py``): kept components m_k against the
  channel gain in a few rounds, and the running average round latency against the budget.
  -> docs/results/soft/mechanism.png
- ``switching`` (paper 3, the ``test_mechanism_*`` tests of ``tests/allocation/switching/test_planner.py``):
  the chosen module rank against distance (one device), the trained rank of a device that moves
  away from the base station, and adaptive vs maximum power transmit energy.
  -> docs/results/switching/mechanism.png

Papers 1 and 2 import the tests' own simulation helpers, so the plot is the test's data; paper 3
copies its tests' setup (their helpers are private to a test file under active change) and calls the
planner only through its public options. Everything is seeded: two runs print the same numbers.

Usage: python scripts/mechanism_plots.py [--part split soft switching] [--data GLUE_DIR]
Paper 1 needs the GLUE data (SST-2/train.tsv; default: $AIRTUNE_DATA_DIR, else ../shared/data/glue).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))          # the tests package: the mechanism tests' helpers
os.environ.setdefault("HF_HUB_OFFLINE", "1")   # as the tests: never download
DOCS = ROOT / "docs" / "results"


def save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120, metadata={"Software": None})
    print(f"saved {path}")


def fmt(a) -> str:
    return np.array2string(np.asarray(a), precision=3, max_line_width=160, threshold=10_000)


# ------------------------------------------------------------------------------------- paper 1
def split_part(data_dir: Path, out: Path) -> None:
    """The data of test_mechanism.py's ``runs`` fixture: sst2-split-lyapunov, 100 rounds, geometric
    and uniform round weights, allocation only (the runner's channel, planner and pricing)."""
    from airtune.config import load_config
    from airtune.experiment.setup import build
    from tests.allocation.split_fed.test_mechanism import CONFIG, ROUNDS, simulate, thirds

    cfg = load_config(CONFIG, [f"data.dir={data_dir}", f"rounds={ROUNDS}", "data.train_subset=1000",
                               "data.test_subset=50", "train.num_threads=1"])
    s = build(cfg)
    runs = {}
    for shape in ("geometric", "uniform"):
        opts = {**cfg.allocation.options, "weights": shape}
        c = cfg.model_copy(update={"allocation": cfg.allocation.model_copy(update={"options": opts})})
        runs[shape] = simulate(dataclasses.replace(s, cfg=c), ROUNDS)

    settle = ROUNDS // 4
    t = np.arange(ROUNDS)
    print(f"paper 1: {ROUNDS} rounds, K = {cfg.num_devices}, queues settle from round {settle}")
    for shape, r in runs.items():
        first, last = thirds(r["n"])
        print(f"  {shape:9s} N_t = {fmt(r['n'])}")
        print(f"  {shape:9s} omega_t first/last = {r['weight'][0]:.3f}/{r['weight'][-1]:.3f}; "
              f"mean N first third {first:.2f}, last third {last:.2f}; "
              f"corr(N, omega) = {np.corrcoef(r['n'], r['weight'])[0, 1] if np.std(r['weight']) > 0 else float('nan'):.3f}; "
              f"unconstrained N mean {r['free_n'].mean():.2f}")
    geo = runs["geometric"]
    budget = float(geo["budget"][-1])
    e = geo["energy"][settle:]                                   # (rounds - settle, K) J per round
    running = np.cumsum(e, axis=0) / np.arange(1, len(e) + 1)[:, None] / budget
    settled = running[-1]
    print(f"  geometric calibrated budget {budget:.4g} J/round/device (rounds {settle}+ within "
          f"{100 * abs(geo['budget'][settle:] / budget - 1).max():.2f} % of it)")
    print(f"  settled energy / budget per device = {fmt(settled)}")
    print(f"  max {settled.max():.3f}, mean {settled.mean():.3f} (test: max <= 1.05, mean >= 0.8)")
    print(f"  running max over devices / budget, every 10 rounds: {fmt(running.max(axis=1)[::10])}")

    fig = Figure(figsize=(11, 4.2))
    ax = fig.add_subplot(1, 2, 1)
    colors = {"geometric": "C0", "uniform": "C1"}
    third = ROUNDS // 3
    for shape, r in runs.items():
        ax.plot(t, r["n"], color=colors[shape], lw=0.7, alpha=0.3)
        k = 9                                                     # centred moving mean, for the trend
        smooth = np.convolve(r["n"], np.ones(k) / k, mode="valid")
        ax.plot(t[k // 2: k // 2 + smooth.size], smooth, color=colors[shape], lw=2,
                label=f"N_t, {shape} weights (9-round mean)")
        first, last = thirds(r["n"])                              # the test's statistic: first vs last third
        ax.hlines([first, last], [0, ROUNDS - third], [third, ROUNDS - 1], colors=colors[shape], lw=4, alpha=0.6)
    ax.plot([], [], color="0.4", lw=4, alpha=0.6, label="mean of the first / last third")
    ax.plot(t, geo["free_n"], color="0.5", lw=1, ls=":", label="unconstrained N (geometric)")
    ax.set_xlabel("round t")
    ax.set_ylabel("devices scheduled N_t (thin: per round)")
    ax2 = ax.twinx()
    for shape, r in runs.items():
        ax2.plot(t, r["weight"], color=colors[shape], ls="--", lw=1.2, label=f"omega_t, {shape}")
    ax2.set_ylabel("round weight omega_t (dashed)")
    ax2.set_ylim(0, 1.05)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.set_ylim(0, 12.5)
    ax.legend(h1 + h2, l1 + l2, fontsize=6.5, loc="lower right", ncol=2)
    ax.set_title("Paper 1: scheduled devices follow the round weight", fontsize=10)

    ax = fig.add_subplot(1, 2, 2)
    tt = t[settle:]
    for k in range(running.shape[1]):
        ax.plot(tt, running[:, k], color="0.7", lw=0.6)
    ax.plot(tt, running.max(axis=1), color="C3", lw=1.8, label="max over devices")
    ax.plot(tt, running.mean(axis=1), color="C0", lw=1.8, label="mean over devices")
    ax.plot([], [], color="0.7", lw=0.6, label="each device")
    ax.axhline(1.0, color="k", lw=1, label="budget")
    ax.axhline(1.05, color="k", lw=1, ls="--", label="budget + 5 %")
    ax.set_ylim(0, max(1.3, float(running[5:].max()) * 1.05))
    ax.set_xlabel(f"round t (average from round {settle}, once the queues settle)")
    ax.set_ylabel("running energy per device / calibrated budget")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"Long-term energy, geometric weights (budget {budget:.3g} J/round)", fontsize=10)
    fig.tight_layout()
    save(fig, out)


# ------------------------------------------------------------------------------------- paper 2
def soft_part(out: Path, scatter_rounds: tuple[int, ...] = (10, 11, 12, 13)) -> None:
    """The data of tsfa/test_mechanism.py: its equal-curves run (30 rounds: kept vs gain) and its
    per-device-curves run (160 rounds, seed 5: the long-term latency)."""
    from airtune.allocation.exchange import SoftPayloadHint
    from tests.allocation.tsfa.test_mechanism import BUDGET, TABLE, K, R, simulate, soft_curves

    # test_better_channel_keeps_at_least_as_many_components_all_else_equal
    rel = np.tile((1 - np.arange(R + 1) / R) ** 2, (K, 1))
    hint = SoftPayloadHint(rank=R, payload_bits=TABLE, error_curve=rel, error_energy=np.ones(K))
    _, kept, gain, sel = simulate(hint, 30, np.full(K, 200.0))
    # test_long_term_latency_meets_the_budget_and_the_choice_is_not_degenerate (the new scaling only)
    rng = np.random.default_rng(5)
    rel5, energy5 = soft_curves(rng)
    sizes = rng.integers(100, 300, K).astype(float)
    hint5 = SoftPayloadHint(rank=R, payload_bits=TABLE, error_curve=rel5, error_energy=energy5)
    lat, kept5, gain5, sel5 = simulate(hint5, 160, sizes)
    running = np.cumsum(lat) / np.arange(1, lat.size + 1)

    print(f"paper 2: K = {K}, r = {R}, latency budget {BUDGET} s")
    print("  equal curves and data sizes (30 rounds): kept m_k of the scheduled devices, by gain")
    print(f"    round 0 (empty queue) keeps {kept[0][sel[0]].tolist()}; plotted rounds {list(scatter_rounds)}")
    for i in scatter_rounds:
        s = sel[i]
        order = np.argsort(gain[i][s])
        g_db = 10 * np.log10(gain[i][s][order])
        print(f"    round {i}: gain dB {fmt(g_db)} -> m {kept[i][s][order].tolist()}")
    spread = sum(int(k[s].max() > k[s].min()) for k, s in zip(kept, sel))
    print(f"    rounds where devices differ: {spread}/30; mean kept {kept[sel].mean():.2f}")
    rho = [np.corrcoef(np.argsort(np.argsort(g[s])), np.argsort(np.argsort(m[s])))[0, 1]
           for m, g, s in zip(kept5, gain5, sel5) if m[s].max() > m[s].min()]
    print(f"  per-device curves (160 rounds, seed 5): mean latency {lat.mean():.3f} s, rounds 80+ "
          f"{lat[80:].mean():.3f} s (test: <= {1.01 * BUDGET:.3f}); within-round rank corr(gain, m) {np.mean(rho):.3f}")
    print(f"  running average latency every 10 rounds: {fmt(running[::10])}")
    print(f"  per-round latency: {fmt(lat)}")

    fig = Figure(figsize=(11, 4.2))
    ax = fig.add_subplot(1, 2, 1)
    for j, i in enumerate(scatter_rounds):
        s = sel[i]
        order = np.argsort(gain[i][s])
        g_db = 10 * np.log10(gain[i][s][order])
        ax.plot(g_db, kept[i][s][order], "o-", ms=6, lw=0.8, color=f"C{j}", alpha=0.85, label=f"round {i}")
    g_all = 10 * np.log10(gain[sel])
    ax.scatter(g_all, kept[sel], s=8, color="0.75", zorder=0, label="all 30 rounds")
    ax.set_xlabel("channel gain of a scheduled device (dB)")
    ax.set_ylabel(f"kept components m_k (of r = {R})")
    ax.set_yticks(range(0, R + 1))
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Paper 2: better channels keep more components\n(equal data sizes and error curves)", fontsize=10)

    ax = fig.add_subplot(1, 2, 2)
    t = np.arange(lat.size)
    ax.plot(t, lat, color="0.75", lw=0.7, label="round latency")
    ax.plot(t, running, color="C0", lw=2, label="running average")
    ax.axhline(BUDGET, color="k", lw=1, label=f"budget {BUDGET:g} s")
    ax.axhline(BUDGET * 1.01, color="k", lw=1, ls="--", label="budget + 1 %")
    zoom = ax.inset_axes((0.4, 0.09, 0.57, 0.25))              # the running average, rounds 20+
    zoom.plot(t[20:], running[20:], color="C0", lw=1.5)
    zoom.axhline(BUDGET, color="k", lw=1)
    zoom.axhline(BUDGET * 1.01, color="k", lw=1, ls="--")
    zoom.set_ylim(BUDGET * 0.995, max(BUDGET * 1.012, float(running[20:].max()) + 0.003))
    zoom.tick_params(labelsize=6)
    zoom.set_title("running average, zoom (rounds 20+)", fontsize=6, pad=2)
    ax.set_xlabel("round t")
    ax.set_ylabel("round latency (s)")
    ax.set_ylim(float(lat.min()) - 0.45, float(lat.max()) + 0.05)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(f"Long-term latency (per-device curves, seed 5): mean {lat.mean():.2f} s", fontsize=10)
    fig.tight_layout()
    save(fig, out)


# ------------------------------------------------------------------------------------- paper 3
RANKS = (4, 8, 16, 32)
DIMS = [(384, 384)] * 12


def switching_setup():
    """Copied from tests/allocation/switching/test_planner.py (``context``, ``module_hint``, ``SLOT``,
    ``slot_context``, ``slot_inputs``, ``outcome``): the fixed-slot link, 0.5 s upload slot."""
    from airtune.allocation.exchange import Hints, ModuleSetHint
    from airtune.allocation.planner import PlannerContext, RoundInputs, RoundOutcome
    from airtune.allocation.switching.objective import module_payload_bits
    from airtune.config.schema import WirelessConfig
    from airtune.wireless.link import link_from_config

    slot = WirelessConfig(upload_slot_s=0.5, interferer_density_per_m2=1.0 / (np.pi * 500.0**2))
    hints = Hints(modules=ModuleSetHint(ranks=RANKS, payload_bits=module_payload_bits(list(RANKS), DIMS)))

    def slot_context(K, n, seed=0):
        rng = np.random.default_rng(seed)
        return PlannerContext(num_devices=K, devices_per_round=n, rounds=5, cpu_freq_hz=rng.uniform(0.5e9, 2e9, K),
                              max_power_w=np.full(K, 0.2), kappa=1e-28,
                              data_sizes=rng.integers(10, 80, K).astype(float), link=link_from_config(slot),
                              lora_dims=DIMS, seed=0, scheduler="random")

    def slot_inputs(ctx, d, rnd=0):
        K = ctx.num_devices
        return RoundInputs(round_idx=rnd, rng=np.random.default_rng(100 + rnd), channel_gain=ctx.link.mean_gain(d),
                           distance_m=np.asarray(d, float), uplink_bits=np.zeros(K), downlink_bits=np.zeros(K),
                           compute_s=np.full(K, 1.0), compute_energy_j=np.full(K, 0.05), hints=hints)

    def outcome(plan, energy, delivered=None):
        sel = plan.selected
        return RoundOutcome(sel.copy() if delivered is None else delivered, sel * 0.9, np.where(sel, energy, 0.0),
                            np.zeros(len(sel)), np.zeros(len(sel)), 1.0)

    return slot_context, slot_inputs, outcome


def switching_part(out: Path) -> None:
    from airtune.allocation.switching.planner import SwitchingPlanner

    slot_context, slot_inputs, outcome = switching_setup()

    def rank_of(plan, k=0):
        m = int(plan.directives.modules.modules[k])
        return RANKS[m] if m >= 0 else 0

    # test_mechanism_the_round_cost_picks_smaller_modules_as_the_channel_worsens
    ctx1 = slot_context(K=1, n=1)
    dists = np.array([30.0, 60.0, 100.0, 150.0, 200.0, 250.0, 300.0, 350.0, 400.0, 450.0])
    greedy_rank, greedy_succ = [], []
    for dist in dists:
        plan = SwitchingPlanner({"switching": "greedy"}, ctx1).plan(slot_inputs(ctx1, np.array([dist]), 0))
        greedy_rank.append(rank_of(plan))
        greedy_succ.append(float(plan.extra["planned_success"][0]))
    print("paper 3: fixed-slot link (0.5 s), ranks 4/8/16/32")
    print(f"  greedy, one device: distance m {dists.tolist()}")
    print(f"    chosen rank {greedy_rank}; planned success {fmt(greedy_succ)}")

    # test_mechanism_online_switching_moves_a_worsening_device_to_smaller_modules (40 m, then 400 m at round 8)
    pl = SwitchingPlanner({}, ctx1)
    single = []
    for rnd in range(20):
        inp = slot_inputs(ctx1, np.array([40.0 if rnd < 8 else 400.0]), rnd)
        plan = pl.plan(inp)
        single.append(rank_of(plan))
        pl.observe(inp, plan, outcome(plan, 0.1))
    print(f"  online, one device 40 m -> 400 m at round 8: trained rank {single} (0: idle); mean rounds 0-7 "
          f"{np.mean([r for r in single[:8] if r] or [np.nan]):.1f}, rounds 12-19 {np.mean([r for r in single[12:] if r] or [np.nan]):.1f}")

    # worsening_device_run (test_mechanism_multi_device_worsening_device_moves_to_a_smaller_module, risk="theorem"):
    # 6 devices at 40-150 m, device 0 moves to 300 m at round 8, deliveries drawn with the planned success
    def worsening(seed, rounds=24, K=6):
        ctx = slot_context(K=K, n=K)
        p = SwitchingPlanner({"risk": "theorem"}, ctx)
        rng = np.random.default_rng(seed)
        base = np.linspace(40.0, 150.0, K)
        ranks, success = [], []
        for rnd in range(rounds):
            d = base.copy()
            d[0] = 40.0 if rnd < 8 else 300.0
            inp = slot_inputs(ctx, d, rnd)
            plan = p.plan(inp)
            ranks.append(rank_of(plan))
            success.append(float(plan.extra["planned_success"][0]))
            delivered = plan.selected & (rng.random(K) < plan.extra["planned_success"])
            p.observe(inp, plan, outcome(plan, 0.1, delivered))
        return ranks, success

    multi = {}
    for seed in (0, 1):
        multi[seed] = worsening(seed)
        print(f"  online, 6 devices, device 0 40 m -> 300 m at round 8, seed {seed}: trained rank {multi[seed][0]}")
        print(f"    planned success {fmt(multi[seed][1])}")

    # test_mechanism_adaptive_power_saves_transmit_energy_at_equal_delivery (12 devices, 4 per round, greedy)
    ctx = slot_context(K=12, n=4)
    d = np.sqrt(np.random.default_rng(3).uniform(30**2, 250**2, 12))
    tx, deliv, same = {}, {}, True
    mods_by = {}
    for power in ("adaptive", "max"):
        p = SwitchingPlanner({"power": power, "switching": "greedy"}, ctx)
        tx[power], deliv[power], mods_by[power] = [], [], []
        for rnd in range(6):
            inp = slot_inputs(ctx, d, rnd)
            plan = p.plan(inp)
            tx[power].append(float(np.sum(plan.power_w) * 0.5))          # p T per upload
            deliv[power].append(float(np.sum(plan.extra["planned_success"])))
            mods_by[power].append(plan.directives.modules.modules.copy())
            p.observe(inp, plan, outcome(plan, 0.1))
    same = all(np.array_equal(a, b) for a, b in zip(mods_by["adaptive"], mods_by["max"]))
    for power in tx:
        print(f"  {power:8s} power: transmit energy per round {fmt(tx[power])} J, total {sum(tx[power]):.3f} J; "
              f"expected deliveries total {sum(deliv[power]):.2f}")
    print(f"    same modules every round: {same}; adaptive/max energy {sum(tx['adaptive']) / sum(tx['max']):.3f} "
          f"(test < 0.95), deliveries {sum(deliv['adaptive']) / sum(deliv['max']):.3f} (test >= 0.99)")

    fig = Figure(figsize=(15, 4.2))
    ax = fig.add_subplot(1, 3, 1)
    ax.plot(dists, greedy_rank, "o-", color="C0", label="chosen rank")
    ax.set_xlabel("device distance (m)")
    ax.set_ylabel("module rank chosen")
    ax.set_yscale("log", base=2)
    ax.set_yticks(RANKS, [str(r) for r in RANKS])
    ax2 = ax.twinx()
    ax2.plot(dists, greedy_succ, "s--", color="C2", ms=4, label="planned success")
    ax2.set_ylabel("planned success probability")
    ax2.set_ylim(0, 1.05)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower left")
    ax.set_title("Paper 3: round cost, one device (greedy)", fontsize=10)

    ax = fig.add_subplot(1, 3, 2)
    level = {r: i for i, r in enumerate((0,) + RANKS)}            # idle, 4, 8, 16, 32 on an even scale
    for series, c, dy, label in ((single, "C0", 0.08, "1 device, 40 -> 400 m"),
                                 (multi[0][0], "C1", 0.0, "device 0 of 6, 40 -> 300 m, seed 0"),
                                 (multi[1][0], "C3", -0.08, "device 0 of 6, 40 -> 300 m, seed 1")):
        ax.step(np.arange(len(series)), [level[r] + dy for r in series], where="mid", color=c, lw=1.5,
                label=label)
    ax.axvline(7.5, color="k", lw=1, ls=":", label="moves away (round 8)")
    ax.set_yticks(range(len(level)), ["idle"] + [str(r) for r in RANKS])
    ax.set_ylim(-0.3, len(level) - 0.5)
    ax.set_xlabel("round")
    ax.set_ylabel("rank the device trains")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("Online switching (theorem bound), device moves away", fontsize=10)

    ax = fig.add_subplot(1, 3, 3)
    rounds = np.arange(6)
    for power, c in (("adaptive", "C0"), ("max", "C1")):
        ax.plot(rounds, np.cumsum(tx[power]), "o-", color=c,
                label=f"{power} power: {sum(tx[power]):.2f} J, {sum(deliv[power]):.2f} expected deliveries")
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative transmit energy p T (J)")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("Adaptive vs max power (12 devices, 4/round, greedy)", fontsize=10)
    fig.tight_layout()
    save(fig, out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", nargs="+", choices=("split", "soft", "switching"), default=["split", "soft", "switching"])
    ap.add_argument("--data", type=Path, default=None, help="GLUE folder (SST-2/train.tsv) for paper 1")
    ap.add_argument("--out", type=Path, default=DOCS, help="results folder (default docs/results)")
    args = ap.parse_args(argv)
    for part in args.part:
        t0 = time.process_time()
        if part == "split":
            from tests.conftest import data_dir
            d = args.data or data_dir()
            if d is None:
                sys.exit("paper 1 needs the GLUE data: --data DIR or AIRTUNE_DATA_DIR (expects SST-2/train.tsv)")
            split_part(d, args.out / "split" / "mechanism.png")
        elif part == "soft":
            soft_part(args.out / "soft" / "mechanism.png")
        else:
            switching_part(args.out / "switching" / "mechanism.png")
        print(f"[{part}: {time.process_time() - t0:.1f} s CPU]\n")


if __name__ == "__main__":
    main()
