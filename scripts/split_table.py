"""Per-run table of the split experiments from the runs' own logs (summary, metrics, clients).

Device compute, participation and the long-term energy-budget check come from clients.jsonl
(one row per device and round): a device's long-term energy is its total energy over the run
divided by the number of rounds (unscheduled rounds count as 0 J), compared with the budget.

Usage: python scripts/split_table.py RUN_DIR... [--budget-j J|auto] --out FILE.md
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def row(run: Path, budget_j: float) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    clients = [json.loads(x) for x in (run / "clients.jsonl").read_text().splitlines() if x.strip()]
    rounds = summary["rounds"]
    energy, compute_s, selected = defaultdict(float), 0.0, 0
    for c in clients:
        energy[c["device"]] += c["energy_j"]
        compute_s += c["compute_s"]
        selected += bool(c["selected"])
    avg = {k: v / rounds for k, v in energy.items()}
    return {"run": run.name, "strategy": summary["strategy"], "final acc": summary["final_accuracy"],
            "best acc": summary["best_accuracy"], "sim time (s)": summary["sim_time_s"],
            "uplink (Mbit)": summary["uplink_bits"] / 1e6, "downlink (Mbit)": summary["downlink_bits"] / 1e6,
            "energy (J)": summary["energy_j"], "device compute (s)": compute_s,
            "device-rounds": selected, "max device avg energy (J/round)": max(avg.values()),
            f"devices over {budget_j:g} J/round": sum(v > budget_j * (1 + 1e-9) for v in avg.values()),
            "wall (s)": summary["wall_time_s"]}


def logged_budget(runs: list[Path]) -> float:
    """The Lyapunov planner's per-device budget (``lyap_budget_j``, calibrated or fixed) of the last
    round of the first run that logged one."""
    for run in runs:
        values = [r["lyap_budget_j"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                  if r.get("lyap_budget_j") is not None]
        if values:
            return float(values[-1])
    raise SystemExit("error: --budget-j auto: no run logged lyap_budget_j; fix: give --budget-j J")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--budget-j", default="auto",
                    help="per-device budget in J/round, or auto: the last lyap_budget_j a run logged")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    budget = logged_budget(a.runs) if a.budget_j == "auto" else float(a.budget_j)
    rows = [row(r, budget) for r in a.runs]
    cols = list(rows[0])

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 10 else f"{v:,.1f}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
