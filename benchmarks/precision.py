#!/usr/bin/env python
"""Benchmark: fp32 against bf16 autocast for one training step, first sight of a shape vs repeats.

Issue 15 asks what the earlier "bf16 is about 40x slower than fp32" figure (``docs/design.md``)
hit. Hypothesis tested here: oneDNN builds its bf16 kernels per input shape, so the *first* step
at each new (batch, sequence length) pays a one-off cost that a short benchmark over many
distinct lengths (dynamic padding) sees on nearly every step, and a real run amortises.

One run, MiniLM-L6 + LoRA r = 8 on query/value, batch 16, on the CPU, one step of the engine's
own loop (``train_steps``: autocast, AdamW, gradient clipping). For each precision, for
each sequence length in ``--lengths``: the time of the first step at that length, then the median
of ``--repeats`` further steps at the same length. Reports examples/s of both, and bf16/fp32
ratios. Read the ratios of one run; timings depend on other jobs on the same cores.

Usage::

    .venv/bin/python benchmarks/precision.py --json docs/results/precision_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from airtune.lora.adapters import LoraSpec, head_keys, inject_lora, trainable_params, trainable_state
from airtune.models.zoo import load_classifier, resolve_model
from airtune.training.local import OptimConfig, make_optimizer, train_steps
from airtune.training.precision import resolve_precision


def step_s(model, opt, batch, cfg: OptimConfig) -> float:
    """Seconds of one step of the engine's own loop (``training.local.train_steps``)."""
    t0 = time.perf_counter()
    train_steps(model, [batch], opt, cfg)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[13, 21, 29, 37, 45, 53, 61])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = resolve_model("minilm-l6")
    rows = []
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = inject_lora(load_classifier(spec, 2), LoraSpec(rank=8, alpha=16.0, dropout=0.0,
                                                               target_modules=("query", "value")), spec.head_modules)
        model.train()
        cfg = OptimConfig(lr=1e-4, head_lr=1e-3, precision=precision)   # AdamW, clipping at 1.0
        heads = set(head_keys(trainable_state(model)))
        opt = make_optimizer(trainable_params(model), cfg, lambda k: k in heads)
        gen = torch.Generator().manual_seed(1)

        def make(length: int) -> dict[str, torch.Tensor]:
            return {"input_ids": torch.randint(1000, 20000, (args.batch, length), generator=gen),
                    "attention_mask": torch.ones(args.batch, length, dtype=torch.long),
                    "labels": torch.randint(0, 2, (args.batch,), generator=gen)}
        for _ in range(2):   # warm-up at a length not measured: the first step ever (allocator, optimiser state)
            step_s(model, opt, make(min(args.lengths) - 1), cfg)
        for length in args.lengths:
            batch = make(length)
            first = step_s(model, opt, batch, cfg)
            rep = statistics.median(step_s(model, opt, batch, cfg) for _ in range(args.repeats))
            rows.append({"precision": precision, "length": length, "first_s": first, "repeat_s": rep,
                         "first_ex_per_s": args.batch / first, "repeat_ex_per_s": args.batch / rep})
            print(f"{precision} L={length:3d}  first {args.batch / first:7.1f} ex/s  "
                  f"repeat {args.batch / rep:7.1f} ex/s  first/repeat {first / rep:5.2f}", flush=True)
    by = {(r["precision"], r["length"]): r for r in rows}
    summary = {}
    for kind in ("first_s", "repeat_s"):
        fp32 = sum(by[("fp32", n)][kind] for n in args.lengths)
        bf16 = sum(by[("bf16", n)][kind] for n in args.lengths)
        summary[f"bf16_speedup_{kind[:-2]}"] = fp32 / bf16
    print(f"bf16 speed-up over fp32: first sight {summary['bf16_speedup_first']:.2f}x, "
          f"repeats {summary['bf16_speedup_repeat']:.2f}x")
    out = {"benchmark": "precision", "auto_resolves_to": resolve_precision("auto", torch.device("cpu")),
           "machine": {"logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
                       "python": platform.python_version(), "torch": torch.__version__},
           "settings": vars(args), "rows": rows, "summary": summary}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
