#!/usr/bin/env bash
# Reproduces docs/results/switching.md: the switching paradigm (paper 3) and its baselines.
# Training runs (configs/switching/): SST-2 proposed + four federated baselines at K = 20, 50 and
# 100 devices (seeds 0 and 1), the proposed scheme with the ensemble of trained modules only, QNLI
# proposed + greedy / one-shot / without energy constraints / maximum power, SST-2 adaptive vs
# maximum power with energy priced (eta = 1); their plots and
# tables; then the allocation-only sweeps (Algorithm 1, adaptive vs maximum power). Run under the
# CPU lock (about 105 min on 2 cores; 38 training runs):
#   flock /tmp/airtune-cpu.lock bash scripts/switching.sh
# SCHEMES="fedit ..." restricts the SST-2 schemes and stops after them (e.g. baselines first).
set -euo pipefail
cd "$(dirname "$0")/.."
AIRTUNE=${AIRTUNE:-.venv/bin/airtune}
source scripts/lib.sh
PY=${PY:-.venv/bin/python}
out=${1:-runs/switching}
docs=docs/results/switching
schemes=${SCHEMES:-switching fedit full_ft hetlora flexlora}
sst2_sweep() {  # sst2_sweep SEED: every scheme at K = 100, 50, 20 (seed 0 at K = 100 keeps the plain names)
  local seed=$1 k s tag
  for k in 100 50 20; do
    for s in $schemes; do
      tag=sst2-K$k-$s; [ "$seed" = 0 ] || tag=$tag-s$seed
      if [ "$k" = 100 ] && [ "$seed" = 0 ]; then run_config "configs/switching/sst2-$s.yaml" "$out/sst2-$s"
      else run_config "configs/switching/sst2-$s.yaml" "$out/$tag" num_devices=$k seed=$seed name=$tag; fi
    done
  done
}
sst2_sweep 0
[ -n "${SCHEMES:-}" ] && exit 0
run_config configs/switching/sst2-switching.yaml "$out/sst2-switching_trained" \
  strategy.options.ensemble=trained name=sst2-switching_trained
for pw in adaptive max; do  # adaptive vs maximum power in training, with energy priced (eta = 1)
  run_config configs/switching/sst2-switching.yaml "$out/sst2-switching_eta1_$pw" \
    allocation.options.energy_coefficient=1.0 allocation.options.power=$pw name=sst2-switching_eta1_$pw
done
for c in qnli-switching qnli-one_shot qnli-greedy qnli-no_energy qnli-max_power; do
  run_config "configs/switching/$c.yaml" "$out/$c"
done
sst2_sweep 1
"$AIRTUNE" report "$out"/sst2-{switching,fedit,full_ft,hetlora,flexlora} --out "$docs/sst2" --target-accuracy 0.75
mapfile -t sweep_dirs < <(ls -d "$out"/sst2-* | grep -v -e _trained -e _eta1)
"$AIRTUNE" report "${sweep_dirs[@]}" --out "$docs/sst2_devices" --target-accuracy 0.75 \
  --sweep num_devices --series strategy.name
"$AIRTUNE" report "$out"/sst2-switching "$out"/sst2-switching_trained --out "$docs/sst2_ensemble" \
  --target-accuracy 0.75
"$AIRTUNE" report "$out"/sst2-switching "$out"/sst2-switching_eta1_{adaptive,max} --out "$docs/sst2_power" \
  --target-accuracy 0.75 --metric switch_power_mean_w --metric switch_energy_queue_mean
"$AIRTUNE" report "$out"/qnli-* --out "$docs/qnli" --target-accuracy 0.6 \
  --metric switch_energy_queue_mean --metric switch_budget_excess_j --metric switch_power_mean_w
"$PY" scripts/switching_runs.py "$out"/sst2-switching "$out"/sst2-switching_eta1_{adaptive,max} "$out"/qnli-* \
  | tee "$docs/run_tables.md"
"$PY" scripts/switching_alloc.py "$docs" | tee "$docs/alloc_tables.md"
