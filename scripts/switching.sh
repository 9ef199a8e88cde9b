#!/usr/bin/env bash
# Reproduces docs/results/switching.md: the switching paradigm (paper 3) and its baselines.
# Training runs (configs/switching/: SST-2 proposed + four federated baselines, QNLI proposed +
# greedy / one-shot / without energy constraints), their plots and tables, then the allocation-only
# sweeps (Algorithm 1, adaptive vs maximum power). Run under the CPU lock:
#   flock /tmp/airtune-cpu.lock bash scripts/switching.sh
set -euo pipefail
cd "$(dirname "$0")/.."
AIRTUNE=${AIRTUNE:-.venv/bin/airtune}
source scripts/lib.sh
PY=${PY:-.venv/bin/python}
out=${1:-runs/switching}
docs=docs/results/switching
for c in sst2-switching sst2-fedit sst2-full_ft sst2-hetlora sst2-flexlora \
         qnli-switching qnli-one_shot qnli-greedy qnli-no_energy; do
  run_config "configs/switching/$c.yaml" "$out/$c"
done
"$AIRTUNE" report "$out"/sst2-* --out "$docs/sst2" --target-accuracy 0.75
"$AIRTUNE" report "$out"/qnli-* --out "$docs/qnli" --target-accuracy 0.6 \
  --metric switch_energy_queue_mean --metric switch_budget_excess_j --metric switch_power_mean_w
"$PY" scripts/switching_alloc.py "$docs" | tee "$docs/alloc_tables.md"
