#!/usr/bin/env bash
# Reproduces docs/results/aggregators.md: six aggregation rules on SST-2 at one shared scale
# (configs/aggregators/), then the comparison plots and table. About 20 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
AIRTUNE=${AIRTUNE:-.venv/bin/airtune}
out=${1:-runs/aggregators}
for s in fedit full_ft hetlora flexlora ffa_lora flora; do
  [ -f "$out/sst2-$s/summary.json" ] && continue
  if [ -d "$out/sst2-$s" ]; then "$AIRTUNE" run --quiet --resume "$out/sst2-$s"
  else "$AIRTUNE" run --quiet "configs/aggregators/sst2-$s.yaml" --out "$out/sst2-$s"; fi
done
"$AIRTUNE" report "$out"/sst2-* --out docs/results/aggregators
