#!/usr/bin/env python
"""Benchmark: the sequential engine (fp32, bf16) against the batched multi-device engine.

One run, same model (the default MiniLM-L6 + LoRA r=8 on query/value), same data and devices;
each device trains ``--steps`` local steps of batch 16 on its own SST-2 shard. Reports device
updates/s and examples/s of:

- sequential fp32 (the default engine), sequential bf16 (autocast);
- batched fp32 and bf16 at ``--devices`` devices per pass (``training/batched.py``).

It runs on whatever device ``train.device=auto`` picks and says which. Timings are sensitive to
other jobs on the same cores: ratios within one run are the figures to read (issue 15: on a CPU
batching is not expected to be faster; on a GPU the target is batched >= 5x sequential at 16).

Usage::

    AIRTUNE_DATA_DIR=/path/to/glue .venv/bin/python benchmarks/batched.py --devices 5 16 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from airtune.data.cache import tokenize
from airtune.data.glue import load_glue
from airtune.lora.adapters import LoraSpec, head_keys, inject_lora, trainable_state
from airtune.models.zoo import load_classifier, load_tokenizer, resolve_model
from airtune.training.batched import BatchedEngine
from airtune.training.device import resolve_device
from airtune.training.engine import ClientTask, Engine
from airtune.training.local import OptimConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, nargs="+", default=[5, 16])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = resolve_model("minilm-l6")
    device, why = resolve_device("auto")
    print(f"device: {device} ({why})")
    n_max = max(args.devices)
    train, _ = load_glue("sst2", os.environ["AIRTUNE_DATA_DIR"], seed=0, train_subset=64 * n_max, test_subset=16)
    data = tokenize(load_tokenizer(spec), train, max_length=64)
    torch.manual_seed(0)
    model = inject_lora(load_classifier(spec, 2), LoraSpec(rank=8, alpha=16.0, dropout=0.0,
                                                           target_modules=("query", "value")), spec.head_modules)
    model.to(device)
    init = trainable_state(model)
    heads = set(head_keys(init))
    parts = [np.arange(64 * d, 64 * (d + 1)) for d in range(n_max)]
    rows = []
    for precision in ("fp32", "bf16"):
        optim = OptimConfig(lr=1e-3, head_lr=5e-3, precision=precision)
        for n in args.devices:
            tasks = [ClientTask(d, init, args.steps, 100 + d) for d in range(n)]
            for name, engine in (("sequential", Engine(model, data, parts, 16, optim, heads)),
                                 ("batched", BatchedEngine(model, data, parts, 16, optim, heads, max_devices=n))):
                engine.run(tasks[:2])                     # warm-up (kernels, allocator)
                t0 = time.perf_counter()
                engine.run(tasks)
                dt = time.perf_counter() - t0
                row = {"engine": name, "precision": precision, "devices": n, "seconds": dt,
                       "updates_per_s": n / dt, "examples_per_s": n * args.steps * 16 / dt}
                rows.append(row)
                print(f"{name:10s} {precision} devices={n:3d}  {row['updates_per_s']:.3f} updates/s  "
                      f"{row['examples_per_s']:.1f} ex/s", flush=True)
    base = {(r["precision"], r["devices"]): r for r in rows if r["engine"] == "sequential" and r["precision"] == "fp32"}
    for r in rows:
        r["vs_sequential_fp32"] = r["updates_per_s"] / base[("fp32", r["devices"])]["updates_per_s"]
    if args.json:
        meta = {"device": str(device), "machine": platform.processor() or platform.machine(), "threads": args.threads,
                "torch": torch.__version__, "steps": args.steps}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
