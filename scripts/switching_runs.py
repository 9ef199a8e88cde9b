"""Per-run radio and participation numbers of switching runs (docs/results/switching.md).

Reads each run directory's metrics.jsonl and clients.jsonl (what `airtune run` wrote) and prints
one Markdown row per run: accuracy at each evaluation, device energy split into uplink transmit
energy (sum of p_k S_k / R_k over the uploads) and the rest (compute), mean transmit power of the
participants, uplink Mbit, lost uploads, distinct participants, module uses (r = 4/8/16/32) and
the mean excess over the per-device energy budget.
Run: .venv/bin/python scripts/switching_runs.py runs/switching/qnli-*
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from airtune.metrics.logger import read_jsonl


def row(run: Path) -> str:
    ms, cs = read_jsonl(run / "metrics.jsonl"), read_jsonl(run / "clients.jsonl")
    acc = " / ".join(f"{m['accuracy']:.3f}" for m in ms if m.get("accuracy") is not None)
    up = [c for c in cs if c["selected"] and c["rate_bps"] > 0]
    tx_j = sum(c["power_w"] * c["payload_bits"] / c["rate_bps"] for c in up)
    total_j = float(ms[-1]["cum_energy_j"])
    power = np.mean([c["power_w"] for c in up]) if up else float("nan")
    lost = sum(len(m["lost"]) for m in ms)
    distinct = len({d for m in ms for d in m["selected"]})
    counts = [m["switch_module_counts"] for m in ms if m.get("switch_module_counts") is not None]
    uses = " / ".join(str(int(v)) for v in np.sum(counts, axis=0)) if counts else "—"
    excess = [m["switch_budget_excess_j"] for m in ms if m.get("switch_budget_excess_j") is not None]
    exc = f"{np.mean(excess):.3f}" if excess else "—"
    return (f"| {run.name} | {acc} | {total_j:.1f} | {tx_j:.2f} | {total_j - tx_j:.1f} | {power:.3f} | "
            f"{ms[-1]['cum_uplink_bits'] / 1e6:.1f} | {lost} | {distinct} | {uses} | {exc} |")


if __name__ == "__main__":
    print("| run | accuracy at each evaluation | device energy (J) | uplink tx energy (J) | compute energy (J) "
          "| mean tx power (W) | uplink (Mbit) | lost uploads | distinct participants | module uses | "
          "mean budget excess (J/round) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for d in sys.argv[1:]:
        print(row(Path(d)))
