"""Mean and 95 % bootstrap interval over seeds of one per-round metric of a sweep's scheme.

Reads ``metrics.jsonl`` of every finished run of ``SCHEME`` in the sweep's manifest and prints, for
each requested round (default: the last), the mean over seeds of ``KEY`` with its interval
(``airtune.report.statistics.mean_ci``), as used by the claims tables of docs/results/.

Usage: python scripts/sweep_metric_ci.py SWEEP_DIR SCHEME KEY [--round R ...]
e.g.   python scripts/sweep_metric_ci.py runs/sweeps/paper2-soft soft_tsfa tsfa_avg_latency_s --round 0 7 15
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from airtune.report.runs import load_run
from airtune.report.statistics import mean_ci


def values(sweep_dir: Path, scheme: str, key: str, round_index: int) -> list[float]:
    """``key`` at ``round_index`` (negative: from the end) of every finished seed of ``scheme``."""
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    out = []
    for entry in manifest["runs"].values():
        if entry["scheme"] != scheme or entry.get("status") != "done":
            continue
        rows = load_run(sweep_dir / entry["run_dir"]).metrics
        value = rows[round_index].get(key)
        if value is None:
            raise SystemExit(f"{entry['run_dir']}: metric '{key}' absent in round {round_index}; "
                             f"fix: choose one of {', '.join(sorted(rows[round_index]))}")
        out.append(float(value))
    if not out:
        raise SystemExit(f"scheme = '{scheme}': no finished run in {sweep_dir}; fix: check the scheme name")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep_dir", type=Path)
    p.add_argument("scheme")
    p.add_argument("key")
    p.add_argument("--round", type=int, nargs="+", default=[-1], dest="rounds")
    a = p.parse_args(argv)
    for r in a.rounds:
        v = values(a.sweep_dir, a.scheme, a.key, r)
        print(f"{a.scheme} {a.key} round {r}: {mean_ci(v).fmt('.3f')} over {len(v)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
