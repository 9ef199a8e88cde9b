#!/usr/bin/env python
"""Tables and plots of docs/results/soft.md from the runs' metrics.jsonl (no training).

Writes into OUT (default docs/results/soft):
- ``summary.md``: per run the final / best / last-3-evaluation mean accuracy, total uplink bits,
  simulated time, average round latency, mean kept share, mean SOFT diagnostics, and, for each
  target accuracy, the cumulative uplink bits and simulated time when the run first reached it and
  the uplink saving relative to the reference run (``--reference``, the ideal scheme);
- ``accuracy_vs_uplink.png``: test accuracy against cumulative uplink bits;
- ``latency_vs_budget.png``: running average of the round latency against the TSFA budget.

Usage: .venv/bin/python scripts/soft_summary.py runs/soft/sst2-* --reference sst2-ideal --target 0.75 0.8
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def first_reach(rows: list[dict], target: float) -> dict | None:
    return next((r for r in rows if r["accuracy"] is not None and r["accuracy"] >= target), None)


def mean_key(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def fmt(x, spec=".4f") -> str:
    return "–" if x is None else format(x, spec)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--reference", default="sst2-ideal")
    ap.add_argument("--target", type=float, nargs="+", default=[0.75])
    ap.add_argument("--out", type=Path, default=Path("docs/results/soft"))
    args = ap.parse_args()
    runs = {p.name: read(p / "metrics.jsonl") for p in args.runs if (p / "metrics.jsonl").exists()}
    ref = runs.get(args.reference)
    lines = ["| run | final acc | best acc | mean of last 3 evals | uplink (Mbit) | sim time (s) | "
             "avg round latency (s) | mean kept share | mean sv gap of scores | mean orth err B |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, rows in runs.items():
        accs = [r["accuracy"] for r in rows if r["accuracy"] is not None]
        keep = mean_key(rows, "tsfa_mean_keep_ratio")
        if keep is None and mean_key(rows, "soft_mean_kept") is not None:
            keep = mean_key(rows, "soft_mean_kept") / rows[0]["soft_rank"]
        lines.append(f"| {name} | {fmt(accs[-1])} | {fmt(max(accs))} | {fmt(float(np.mean(accs[-3:])))} | "
                     f"{rows[-1]['cum_uplink_bits'] / 1e6:,.1f} | {rows[-1]['sim_time_s']:.1f} | "
                     f"{rows[-1]['sim_time_s'] / len(rows):.3f} | {fmt(keep, '.3f')} | "
                     f"{fmt(mean_key(rows, 'score_sv_rel_err'), '.3f')} | {fmt(mean_key(rows, 'orth_err_b'), '.2e')} |")
    for target in args.target:
        lines += ["", f"Target accuracy {target}: first evaluation at or above it.", "",
                  "| run | round | uplink to target (Mbit) | sim time to target (s) | uplink saved vs "
                  f"{args.reference} |", "|---|---:|---:|---:|---:|"]
        ref_hit = first_reach(ref, target) if ref else None
        for name, rows in runs.items():
            hit = first_reach(rows, target)
            if hit is None:
                lines.append(f"| {name} | not reached | – | – | – |")
                continue
            saved = (1 - hit["cum_uplink_bits"] / ref_hit["cum_uplink_bits"]) if ref_hit else None
            lines.append(f"| {name} | {hit['round'] + 1} | {hit['cum_uplink_bits'] / 1e6:,.1f} | "
                         f"{hit['sim_time_s']:.1f} | {fmt(None if saved is None else 100 * saved, '.1f')}% |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, rows in runs.items():
        ev = [r for r in rows if r["accuracy"] is not None]
        ax.plot([r["cum_uplink_bits"] / 1e6 for r in ev], [r["accuracy"] for r in ev], marker="o", label=name)
    ax.set_xlabel("cumulative uplink (Mbit)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "accuracy_vs_uplink.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 4))
    budgets = set()
    for name, rows in runs.items():
        lat = np.array([r["round_latency_s"] for r in rows])
        ax.plot(np.arange(1, lat.size + 1), np.cumsum(lat) / np.arange(1, lat.size + 1), label=name)
        budgets |= {r["tsfa_budget_s"] for r in rows if r.get("tsfa_budget_s") is not None}
    for b in sorted(budgets):
        ax.axhline(b, color="k", ls="--", lw=1, label=f"TSFA budget {b:g} s")
    ax.set_xlabel("round")
    ax.set_ylabel("running average round latency (s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "latency_vs_budget.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
