#!/usr/bin/env bash
# Short runs of the default experiment and one config per paper, for bit-identity checks across
# refactors: `bash scripts/golden_runs.sh OUT_DIR` (then compare two OUT_DIRs with
# `python scripts/compare_runs.py A B`). Each run is 2-3 rounds on data subsets (~30 s each).
set -euo pipefail
out=${1:?usage: golden_runs.sh OUT_DIR}
airtune=${AIRTUNE:-.venv/bin/airtune}
small="data.train_subset=1200 data.test_subset=100 data.min_partition_size=5 train.local_steps=2 eval_every=1"
mkdir -p "$out"
$airtune run --quiet configs/default.yaml rounds=3 $small --out "$out/default"
$airtune run --quiet configs/split/sst2-split-lyapunov.yaml rounds=2 $small --out "$out/split"
$airtune run --quiet configs/soft/sst2-soft_tsfa.yaml rounds=2 $small --out "$out/soft"
$airtune run --quiet configs/switching/sst2-switching.yaml rounds=2 num_devices=20 $small --out "$out/switching"
