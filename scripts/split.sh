#!/usr/bin/env bash
# Reproduces docs/results/split.md (paper 1, split federated LoRA): eight runs on SST-2 at one
# shared scale (configs/split/), the comparison plots and tables, and the allocation-only
# V sweep. Run under the CPU lock: flock /tmp/airtune-cpu.lock bash scripts/split.sh
set -euo pipefail
cd "$(dirname "$0")/.."
AIRTUNE=${AIRTUNE:-.venv/bin/airtune}
source scripts/lib.sh
PY=${PY:-.venv/bin/python}
out=${1:-runs/split}
res=docs/results/split
runs="split-random split-pooled split-shared fedit-random fullft-random split-lyapunov split-bestchannel split-full"
for s in $runs; do
  run_config "configs/split/sst2-$s.yaml" "$out/sst2-$s"
done
# 1. split vs non-split federated LoRA vs full fine-tuning (and the split variants)
"$AIRTUNE" report "$out"/sst2-{split-random,split-pooled,split-shared,fedit-random,fullft-random} --out "$res/methods"
# 2. online Lyapunov scheduling vs the scheduling baselines (all split federated LoRA)
"$AIRTUNE" report "$out"/sst2-{split-lyapunov,split-random,split-bestchannel,split-full} --out "$res/scheduling" \
  --metric lyap_queue_mean_j --metric lyap_queue_max_j --metric lyap_N --metric lyap_budget_ratio_max
# 3. tables from the runs' logs (device compute, long-term energy per device vs the Lyapunov run's budget)
"$PY" scripts/split_table.py "$out"/sst2-* --budget-j auto --out "$res/table.md"
# 4. V trade-off: allocation-only simulation over 400 rounds (no training)
#    with the config's bound weights (geometric), and with every round weighted equally (rho = 1)
"$PY" scripts/split_vsweep.py configs/split/sst2-split-lyapunov.yaml --rounds 400 --V 0.03 0.3 3 30 --out "$res"
"$PY" scripts/split_vsweep.py configs/split/sst2-split-lyapunov.yaml --rounds 400 --V 0.03 0.3 3 30 --rho 1 --out "$res"
