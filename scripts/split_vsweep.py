"""Allocation-only simulation of paper 1's online scheduler: the V trade-off over many rounds.

No training: every round draws the run's channel (same seeds and streams as ``airtune run``),
asks the allocator for a plan with split federated LoRA's planned traffic
(``SplitFedLoRA.planned_bits``: head + activations per sample x samples) and the device-side
compute, prices it with the runner's own ``radio_round`` and feeds the measured energy back to
the planner. Compares ``lyapunov`` at several V with the baselines (random / best-channel
scheduling with equal bandwidth, full participation), measuring participation, energy per
device and round against the long-term budget, and round latency.

Usage: python scripts/split_vsweep.py CONFIG [--rounds 400] [--V 0.03 0.3 3 30] [--rho R] --out DIR
(``--rho`` replaces the config's bound contraction; outputs are vsweep[_rhoR].{md,json,png}).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from airtune.allocation.planner import RoundOutcome
from airtune.config import load_config
from airtune.experiment.runner import build_planner, price_round, round_inputs
from airtune.experiment.seeds import rng
from airtune.experiment.setup import build
from airtune.wireless.channel import step_channel


def simulate(s, rounds: int) -> dict:
    """Run the allocator of ``s.cfg`` for ``rounds`` rounds without training; per-round arrays."""
    cfg = s.cfg
    planner = build_planner(s)
    server = s.strategy.init_state(s.initial_state)
    samples_all = np.asarray(s.strategy.context.samples_per_round, dtype=float)
    n_sel, energy, latency, queue_mean, budget = [], [], [], [], []
    for t in range(rounds):
        ch = step_channel(s.channel, rng(cfg.seed, "channel", t), cfg.wireless.fading)
        x = round_inputs(s, server, t, ch)
        plan = planner.plan(x)
        sel = plan.selected
        radio = price_round(s, ch, plan, np.where(sel, x.uplink_bits, 0.0),
                            np.where(sel, x.downlink_bits, 0.0), np.where(sel, samples_all, 0.0), t)
        rep = planner.observe(x, plan, RoundOutcome(radio.delivered, radio.success_prob, radio.cost.energy_j,
                                                    radio.cost.latency_s, x.uplink_bits,
                                                    radio.cost.round_latency_s))
        n_sel.append(int(sel.sum()))
        energy.append(np.where(sel, radio.cost.energy_j, 0.0))
        latency.append(radio.cost.round_latency_s)
        queue_mean.append(rep.get("lyap_queue_mean_j", 0.0))
        budget.append(rep.get("lyap_budget_j", np.nan))
    return {"n": np.array(n_sel), "energy": np.array(energy), "latency": np.array(latency), "budget": np.array(budget),
            "queue_mean": np.array(queue_mean)}


def summarise(name: str, r: dict, budget_j: float) -> dict:
    avg = r["energy"].mean(axis=0)                         # (K,) long-term energy per round
    return {"scheme": name, "mean_N": float(r["n"].mean()), "energy_per_round_j": float(r["energy"].sum(1).mean()),
            "max_device_avg_energy_j": float(avg.max()), "budget_j": budget_j,
            "devices_over_budget": int(np.sum(avg > budget_j * (1 + 1e-9))),
            "mean_round_latency_s": float(r["latency"].mean()),
            "final_queue_mean_j": float(r["queue_mean"][-1])}


def variant(s, **changes):
    """``s`` with a modified config (allocation and devices per round); the same built model/data."""
    cfg = s.cfg.model_copy(update=changes)
    return dataclasses.replace(s, cfg=cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--rounds", type=int, default=400)
    ap.add_argument("--V", type=float, nargs="+", default=[0.003, 0.03, 0.3, 3.0])
    ap.add_argument("--rho", type=float, default=None)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    stem = "vsweep" if a.rho is None else f"vsweep_rho{a.rho:g}"
    t0 = time.perf_counter()
    base = load_config(a.config, [f"rounds={a.rounds}"])
    s = build(base)
    alloc = base.allocation
    rows, series = [], {}
    budget = float("nan")   # the planner's per-device budget (calibrated: its final value), as it logs it
    for v in a.V:
        opts = {**alloc.options, "V": v, **({} if a.rho is None else {"rho": a.rho})}
        r = simulate(variant(s, allocation=alloc.model_copy(update={"options": opts})), a.rounds)
        budget = float(r["budget"][-1])
        rows.append(summarise(f"lyapunov V={v:g}", r, budget))
        series[f"V={v:g}"] = r
    for name, sched, n in (("random, equal bandwidth", "random", base.devices_per_round),
                           ("best channel, equal bandwidth", "best_channel", base.devices_per_round),
                           ("full participation, equal bandwidth", "random", base.num_devices)):
        eq = alloc.model_copy(update={"name": "equal", "scheduler": sched, "options": {}})
        r = simulate(variant(s, allocation=eq, devices_per_round=n), a.rounds)
        rows.append(summarise(name, r, budget))
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"{stem}.json").write_text(json.dumps({"config": a.config, "rounds": a.rounds, "seed": base.seed,
                                                   "rho": a.rho if a.rho is not None else alloc.options.get("rho"),
                                                   "rows": rows}, indent=1))
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append("| " + " | ".join(f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in cols) + " |")
    (a.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    _plot(series, rows, budget, a.out / f"{stem}.png")
    print("\n".join(lines))
    print(f"wall {time.perf_counter() - t0:.1f} s")


def _plot(series: dict, rows: list[dict], budget: float, path: Path) -> None:
    fig = Figure(figsize=(10, 4), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    lyap = [r for r in rows if r["scheme"].startswith("lyapunov")]
    vs = [float(r["scheme"].split("=")[1]) for r in lyap]
    ax1.semilogx(vs, [r["mean_N"] for r in lyap], "o-", label="mean devices per round")
    ax1b = ax1.twinx()
    ax1b.semilogx(vs, [r["max_device_avg_energy_j"] for r in lyap], "s--", color="C3",
                  label="max device avg energy (J/round)")
    ax1b.axhline(budget, color="C3", lw=0.8, ls=":", label="budget")
    ax1.set_xlabel("V")
    ax1.set_ylabel("mean devices per round")
    ax1b.set_ylabel("max per-device average energy (J/round)")
    ax1.set_title("V trade-off: participation vs energy")
    ax1.legend(loc="upper left", fontsize="small")
    ax1b.legend(loc="lower right", fontsize="small")
    for name, r in series.items():
        ax2.plot(np.arange(1, len(r["queue_mean"]) + 1), r["queue_mean"], label=name)
    ax2.set_xlabel("round")
    ax2.set_ylabel("mean virtual queue (J)")
    ax2.set_title("energy queues")
    ax2.legend(fontsize="small")
    fig.savefig(path)


if __name__ == "__main__":
    main()
