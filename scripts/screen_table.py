"""Tabulate single screening runs against a base config:
``python scripts/screen_table.py BASE.yaml RUN_DIR [RUN_DIR ...] [--json OUT.json]``.

Each row gives the run's final and best accuracy, every evaluation, its host wall time
(``summary.json``'s ``wall_time_s``, start-up excluded) and the
keys of its ``config.resolved.yaml`` that differ from BASE (the overrides, found by diffing, so
the table cannot disagree with what ran). Markdown goes to stdout. Screening runs choose what to
measure over seeds; they are not evidence on their own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def overrides(base: dict[str, Any], run: dict[str, Any], ignore: tuple[str, ...] = ("name",)) -> dict[str, Any]:
    """Keys whose value in ``run`` differs from ``base`` (both flattened), except ``ignore``."""
    fb, fr = flatten(base), flatten(run)
    return {k: fr.get(k) for k in sorted(set(fb) | set(fr)) if k not in ignore and fb.get(k) != fr.get(k)}


def row(base: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """One screening row from a finished run directory."""
    cfg = yaml.safe_load((run_dir / "config.resolved.yaml").read_text(encoding="utf-8"))
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    evals = [r["accuracy"] for r in recs if r.get("accuracy") is not None]
    if not evals:
        raise SystemExit(f"run {run_dir}: metrics.jsonl has no evaluation; fix: pass a finished run directory")
    return {"run": run_dir.name, "overrides": overrides(base, cfg), "final_accuracy": round(evals[-1], 4),
            "best_accuracy": round(max(evals), 4), "wall_time_s": round(summary["wall_time_s"], 1),
            "evals": [round(a, 4) for a in evals]}


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| run | final | best | wall (s) | overrides of the base |", "|---|---:|---:|---:|---|"]
    for r in rows:
        ov = " ".join(f"`{k}={v}`" for k, v in r["overrides"].items()) or "(none)"
        lines.append(f"| {r['run']} | {r['final_accuracy']:.4f} | {r['best_accuracy']:.4f} | {r['wall_time_s']:.0f} | {ov} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path)
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    base = yaml.safe_load(args.base.read_text(encoding="utf-8"))
    rows = [row(base, d) for d in args.runs]
    print(markdown(rows))
    if args.json is not None:
        if args.json.exists():
            raise SystemExit(f"--json {args.json}: already exists; fix: choose a new file or delete it")
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
