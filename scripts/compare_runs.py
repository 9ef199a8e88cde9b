"""Compare the metrics.jsonl and clients.jsonl of two folders of run directories, record by
record, ignoring host wall times: ``python scripts/compare_runs.py A B`` (exit 1 on a difference)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

VOLATILE = {"wall_time_s"}


def records(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in VOLATILE}
            for line in path.read_text().splitlines() if line.strip()]


def main(a: str, b: str) -> int:
    bad = 0
    for run in sorted(p.name for p in Path(a).iterdir() if p.is_dir()):
        for name in ("metrics.jsonl", "clients.jsonl"):
            same = records(Path(a) / run / name) == records(Path(b) / run / name)
            print(f"{run}/{name}: {'identical' if same else 'DIFFERENT'}")
            bad += not same
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
