#!/usr/bin/env bash
# Reproduces docs/results/aggregators.md: six aggregation rules on SST-2 at one shared scale
# (configs/aggregators/), then the comparison plots and table. About 20 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
AIRTUNE=${AIRTUNE:-.venv/bin/airtune}
source scripts/lib.sh
out=${1:-runs/aggregators}
for s in fedit full_ft hetlora flexlora ffa_lora flora; do
  run_config "configs/aggregators/sst2-$s.yaml" "$out/sst2-$s"
done
"$AIRTUNE" report "$out"/sst2-* --out docs/results/aggregators
