#!/usr/bin/env python
"""Benchmark: airtune's shared-model engine against per-update model construction.

Measures, in one run, on the same data, devices, batches and settings:

(a) ours: ``airtune.training.engine.Engine`` -- one PEFT model shared by every simulated device;
    a device update writes the device's adapter + head tensors into it, trains, reads them back.
(b) theirs: what FlowerTune and the typical Flower LLM examples do in every client ``fit``:
    ``from_pretrained`` of the base model (here through ``airtune.models.zoo.load_classifier``, so
    that both sides train the same architecture: for minilm-l6 ``AutoModel.from_pretrained`` + the
    mean-pool head, for other models ``AutoModelForSequenceClassification.from_pretrained``),
    ``peft.get_peft_model``, ``set_peft_model_state_dict`` with the global adapter, train,
    ``get_peft_model_state_dict``. The construction time is counted, as it is in those frameworks.

Both sides run the same reference loop (``airtune.training.local.train_steps``) with the same
optimiser, batches and dropout seed, so only the model handling differs; the script checks that
both produce the same trained tensors.

(c) memory for N simulated devices: ours holds one model + N adapter states; a simulator with a
model per client actor holds N models. Computed from parameter counts (bytes = numel x element
size of parameters and buffers), plus this process's measured RSS with N device states held and
the RSS / USS / PSS that extra per-client models, built as (b) builds them, add when held at once.
Timings are sensitive to other jobs on the same cores: the medians are the robust figures.

Usage (from the repository root)::

    AIRTUNE_DATA_DIR=/path/to/glue .venv/bin/python benchmarks/engine.py --json bench.json

Settings are the built-in experiment defaults (``Config()``, the values of ``configs/default.yaml``:
model, dataset, devices, partition, LoRA, optimiser; recorded in the JSON) with strategy ``fedit``
(one adapter, as in FlowerTune) and the flags below.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

# --------------------------------------------------------------------------------------------
# helpers


def mem_info() -> dict[str, int]:
    """This process's memory: ``rss`` (resident), and where /proc/self/smaps is readable ``uss``
    (pages mapped once only) and ``pss`` (each page divided by the number of its mappings)."""
    try:
        import psutil

        proc = psutil.Process()
        try:
            full = proc.memory_full_info()
            return {"rss": int(full.rss), "uss": int(full.uss), "pss": int(getattr(full, "pss", -1))}
        except (psutil.AccessDenied, AttributeError):
            return {"rss": int(proc.memory_info().rss), "uss": -1, "pss": -1}
    except ImportError:  # pragma: no cover - psutil is normally present
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return {"rss": int(line.split()[1]) * 1024, "uss": -1, "pss": -1}
    return {"rss": -1, "uss": -1, "pss": -1}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def tensor_bytes(tensors) -> int:
    return int(sum(t.numel() * t.element_size() for t in tensors))


def model_bytes(model: torch.nn.Module) -> tuple[int, int]:
    """(number of parameters, bytes of parameters + buffers) of a model."""
    n = sum(p.numel() for p in model.parameters())
    return int(n), tensor_bytes(list(model.parameters()) + list(model.buffers()))


def mib(b: float) -> float:
    return b / 2**20


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    if a.keys() != b.keys():
        raise KeyError(f"state keys differ: {sorted(a.keys() ^ b.keys())[:4]}")
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# --------------------------------------------------------------------------------------------
# the two ways of running one device update


def ours_update(engine, task) -> tuple[Any, dict[str, float]]:
    """(a) airtune: the shared model, state swapped in and out by ``Engine.run_one``."""
    t0 = time.perf_counter()
    up = engine.run_one(task)
    return up, {"total_s": time.perf_counter() - t0}


def build_client_model(ctx: dict[str, Any], global_state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """What a FlowerTune-style client does at the start of ``fit``: a fresh PEFT model + the global adapter."""
    from peft import set_peft_model_state_dict

    from airtune.lora.adapters import inject_lora
    from airtune.models.zoo import load_classifier

    spec = ctx["spec"]
    # from_pretrained of the base with a fresh head, exactly as airtune loads this model
    # (minilm-l6: AutoModel.from_pretrained + mean-pool head; other models:
    # AutoModelForSequenceClassification.from_pretrained)
    base = load_classifier(spec, ctx["num_labels"])
    model = inject_lora(base, ctx["lora"], spec.head_modules)  # = peft.get_peft_model(base, LoraConfig(...))
    res = set_peft_model_state_dict(model, global_state)
    if res.unexpected_keys:
        raise KeyError(f"set_peft_model_state_dict: unexpected keys {res.unexpected_keys[:3]}")
    return model


def theirs_update(ctx: dict[str, Any], task) -> tuple[dict[str, torch.Tensor], list[float], dict[str, float]]:
    """(b) FlowerTune-style ``fit``: build the PEFT model anew, load the global adapter, train, export."""
    from peft import get_peft_model_state_dict

    from airtune.lora.adapters import trainable_params
    from airtune.training.engine import device_batches
    from airtune.training.local import make_optimizer, train_steps

    optim, head_keys = ctx["optim"], ctx["head_keys"]
    t0 = time.perf_counter()
    model = build_client_model(ctx, task.state)
    t1 = time.perf_counter()
    opt = make_optimizer(trainable_params(model), optim, lambda k: k in head_keys)
    rng = np.random.default_rng(task.seed)
    torch.manual_seed(task.seed)  # dropout, as in Engine.run_one
    idx = ctx["partitions"][task.device]
    losses = train_steps(model, device_batches(ctx["data"], idx, task.steps, ctx["batch_size"], rng),
                         opt, optim, None if task.regularizer is None else task.regularizer.build())
    t2 = time.perf_counter()
    state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
    del model, opt
    t3 = time.perf_counter()
    return state, losses, {"build_s": t1 - t0, "train_s": t2 - t1, "extract_s": t3 - t2, "total_s": t3 - t0}


# --------------------------------------------------------------------------------------------
# memory


def measure_memory(s, ctx: dict[str, Any], device_counts: list[int], extra_models: int) -> dict[str, Any]:
    """Computed bytes (parameter counts) for N devices both ways, and measured process memory.

    Runs before any training, so that freed training buffers cannot hide allocations.
    """
    from airtune.data.cache import collate
    from airtune.lora.adapters import trainable_state

    n_params, m_bytes = model_bytes(s.model)
    frozen = sum(p.numel() for p in s.model.parameters() if not p.requires_grad)
    a_state = trainable_state(s.model)
    a_params = sum(v.numel() for v in a_state.values())
    a_bytes = tensor_bytes(a_state.values())

    gc.collect()
    m_setup = mem_info()
    rows, held = [], []
    for n in device_counts:  # ours: the shared model + N device states (adapter + head)
        while len(held) < n:
            held.append({k: v.clone() for k, v in a_state.items()})
        m = mem_info()
        rows.append({
            "devices": n,
            "ours_computed_bytes": m_bytes + n * a_bytes,
            "per_client_copy_computed_bytes": n * m_bytes,
            "ratio_ours_over_theirs": (m_bytes + n * a_bytes) / (n * m_bytes),
            "ours_measured": m,
            "ours_measured_delta_rss_bytes": m["rss"] - m_setup["rss"],
        })
    del held
    gc.collect()

    # Per-client copies built as (b) builds them, held at once, each after one forward pass
    # (so its weights are resident, as during training).
    batch = collate(s.train, np.arange(min(16, len(s.train))))
    m_before = mem_info()
    models, after = [], []
    for _ in range(extra_models):
        models.append(build_client_model(ctx, s.initial_state))
        with torch.no_grad():
            models[-1].eval()(**batch)
        after.append(mem_info())
    del models
    gc.collect()
    per = {}
    if extra_models:
        for key in ("rss", "uss", "pss"):
            per[key] = (after[-1][key] - m_before[key]) / extra_models if m_before[key] >= 0 else None
    return {
        "method": "computed = numel x element size of parameters and buffers; "
                  "measured = this process (psutil: rss, uss = private, pss = proportional)",
        "model_params": n_params, "model_frozen_params": int(frozen), "model_bytes": m_bytes,
        "device_state_params": int(a_params), "device_state_bytes": a_bytes,
        "measured_after_setup": m_setup, "rows": rows,
        "extra_client_models": extra_models, "measured_before_extra_models": m_before,
        "measured_after_each_extra_model": after, "measured_per_extra_model_bytes": per,
    }


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--devices", type=int, default=10, help="timed device updates per side")
    p.add_argument("--steps", type=int, default=5, help="local optimiser steps per device update")
    p.add_argument("--batch-size", type=int, default=16, help="examples per local step")
    p.add_argument("--seed", type=int, default=0, help="master seed (data split, devices, batches)")
    p.add_argument("--mem-devices", default="20,100,1000",
                   help="comma-separated numbers N of simulated devices for the memory table")
    p.add_argument("--mem-models", type=int, default=2,
                   help="per-client model copies built and held at once to measure their memory")
    p.add_argument("--json", type=Path, default=None, help="write all measurements to this JSON file")
    a = p.parse_args(argv)
    if a.devices < 1 or a.steps < 1 or a.batch_size < 1 or a.mem_models < 0:
        p.error("--devices, --steps and --batch-size must be >= 1, --mem-models >= 0")
    a.mem_devices = sorted({int(x) for x in str(a.mem_devices).split(",") if x.strip()})
    if not a.mem_devices or a.mem_devices[0] < 1:
        p.error("--mem-devices: give positive integers, e.g. 20,100,1000")
    return a


def summarize(ts: list[dict[str, float]], examples: list[int]) -> dict[str, Any]:
    tot = [t["total_s"] for t in ts]
    out: dict[str, Any] = {
        "updates": len(ts), "examples": int(sum(examples)), "seconds": sum(tot),
        "examples_per_s": sum(examples) / sum(tot), "updates_per_s": len(ts) / sum(tot),
        "s_per_update_mean": statistics.fmean(tot), "s_per_update_median": statistics.median(tot),
        "s_per_update_stdev": statistics.stdev(tot) if len(tot) > 1 else 0.0,
        "per_update": ts,
    }
    for part in ("build_s", "train_s", "extract_s"):
        if part in ts[0]:
            out[f"{part}_mean"] = statistics.fmean(t[part] for t in ts)
    return out


def report(res: dict[str, Any]) -> None:
    ours, theirs, r = res["ours"], res["theirs"], res["ratio_ours_over_theirs"]
    st, eq, mem = res["settings"], res["equivalence"], res["memory"]
    w = 30
    print()
    print(f"{'':20}{'ours (shared model)':>{w}}{'theirs (rebuild per update)':>{w}}{'ours/theirs':>13}")
    print(f"{'examples/s':20}{ours['examples_per_s']:>{w}.2f}{theirs['examples_per_s']:>{w}.2f}"
          f"{r['examples_per_s']:>13.3f}")
    print(f"{'updates/s':20}{ours['updates_per_s']:>{w}.4f}{theirs['updates_per_s']:>{w}.4f}"
          f"{r['updates_per_s']:>13.3f}")
    print(f"{'s/update (mean)':20}{ours['s_per_update_mean']:>{w}.4f}{theirs['s_per_update_mean']:>{w}.4f}"
          f"{r['s_per_update_mean']:>13.3f}")
    print(f"{'s/update (median)':20}{ours['s_per_update_median']:>{w}.4f}"
          f"{theirs['s_per_update_median']:>{w}.4f}{r['s_per_update_median']:>13.3f}")
    for part, label in (("build_s", "build"), ("train_s", "train"), ("extract_s", "export")):
        print(f"{'  ' + label + ' (mean)':20}{'-':>{w}}{theirs[part + '_mean']:>{w}.4f}")
    print(f"({ours['updates']} timed updates per side after 1 warm-up each, {st['steps']} steps x batch "
          f"{st['batch_size']}, {ours['examples']} examples per side, seed {st['seed']}; "
          f"max |ours - theirs| over trained tensors = {eq['max_abs_state_diff']:.2e})")
    print()
    print(f"memory, computed from parameter counts (fp32 bytes of parameters + buffers): one model "
          f"{mem['model_params']:,} params = {mib(mem['model_bytes']):.2f} MiB; one device state "
          f"(adapter + head) {mem['device_state_params']:,} params = {mib(mem['device_state_bytes']):.3f} MiB")
    print(f"{'N devices':>10}{'ours: 1 model + N states':>28}{'per-client copy: N models':>29}"
          f"{'ours/theirs':>13}{'ours measured RSS':>20}")
    for row in mem["rows"]:
        print(f"{row['devices']:>10}{mib(row['ours_computed_bytes']):>24.1f} MiB"
              f"{mib(row['per_client_copy_computed_bytes']):>25.1f} MiB{row['ratio_ours_over_theirs']:>13.4f}"
              f"{mib(row['ours_measured']['rss']):>16.1f} MiB")
    m0 = mem["measured_after_setup"]
    print(f"(measured RSS is this whole process -- Python, torch, the tokenised {st['dataset']} pool and the "
          f"shared model: {mib(m0['rss']):.1f} MiB after setup, before any device state)")
    per = mem["measured_per_extra_model_bytes"]
    if per:
        fmt = lambda v: "n/a" if v is None else f"{mib(v):.1f} MiB"  # noqa: E731
        print(f"measured, per extra per-client model built as (b) builds it and held "
              f"({mem['extra_client_models']} held at once, one forward pass each): "
              f"RSS +{fmt(per['rss'])}, USS (private) +{fmt(per['uss'])}, PSS +{fmt(per['pss'])}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(2)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "classifier newly initialised" on every from_pretrained
    hf_logging.disable_progress_bar()  # "Loading weights" bar on every from_pretrained

    from airtune.config import load_config
    from airtune.experiment.runner import make_engine
    from airtune.experiment.seeds import int_seed, rng
    from airtune.experiment.setup import build
    from airtune.lora.adapters import LoraSpec
    from airtune.training.engine import ClientTask

    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    cfg = load_config(None, [f"seed={args.seed}", f"train.batch_size={args.batch_size}",
                             f"train.local_steps={args.steps}", "train.num_threads=2", "strategy.name=fedit"])
    print(f"setup: {cfg.model.name} on {cfg.data.dataset}, {cfg.num_devices} devices ({cfg.data.partition}), "
          f"LoRA r={cfg.lora.rank} on {list(cfg.lora.target_modules)}, {args.steps} steps x batch "
          f"{args.batch_size}, seed {args.seed}", flush=True)
    t0 = time.perf_counter()
    s = build(cfg)
    torch.set_num_threads(2)
    setup_s = time.perf_counter() - t0
    engine = make_engine(s)
    ctx = {
        "spec": s.spec, "optim": engine.optim, "head_keys": s.head_keys, "partitions": s.partitions,
        "data": s.train, "batch_size": args.batch_size, "num_labels": int(s.label_counts.shape[1]),
        "lora": LoraSpec(cfg.lora.rank, cfg.lora.alpha, cfg.lora.dropout, tuple(cfg.lora.target_modules)),
    }

    print("memory ...", flush=True)
    memory = measure_memory(s, ctx, args.mem_devices, args.mem_models)

    # The device updates: devices in a seeded order (cycled), each starting from the global state.
    order = rng(args.seed, "schedule", 0).permutation(cfg.num_devices)
    tasks = []
    for i in range(args.devices + 1):
        k = int(order[i % cfg.num_devices])
        tasks.append(ClientTask(k, s.initial_state, args.steps, int_seed(args.seed, "batches", i // cfg.num_devices, k)))
    warm, timed = tasks[0], tasks[1:]
    examples = [args.steps * min(args.batch_size, len(s.partitions[t.device])) for t in timed]

    # Warm-up: one update per side (first-call allocations, page cache of the weight file).
    ours_update(engine, warm)
    gc.collect()
    theirs_update(ctx, warm)
    gc.collect()

    print(f"timing {len(timed)} device updates per side (interleaved, alternating which goes first) ...",
          flush=True)
    ours_t, theirs_t, diffs, loss_diffs = [], [], [], []
    for i, task in enumerate(timed):
        for side in (("ours", "theirs") if i % 2 == 0 else ("theirs", "ours")):
            if side == "ours":
                up, t = ours_update(engine, task)
                ours_t.append(t)
            else:
                th_state, th_losses, t = theirs_update(ctx, task)
                theirs_t.append(t)
            gc.collect()  # outside the timed region, for both sides
        diffs.append(max_abs_diff(up.state, th_state))
        loss_diffs.append(abs(up.train_loss - float(np.mean(th_losses))))

    ours, theirs = summarize(ours_t, examples), summarize(theirs_t, examples)
    result = {
        "benchmark": "engine",
        "command": " ".join(["benchmarks/engine.py", *(sys.argv[1:] if argv is None else argv)]),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"cpu_model": cpu_model(), "logical_cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "loadavg_at_start": load_start,
                    "loadavg_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
                    "python": platform.python_version(), "torch": torch.__version__,
                    "transformers": __import__("transformers").__version__,
                    "peft": __import__("peft").__version__},
        "settings": {"model": cfg.model.name, "dataset": cfg.data.dataset, "train_pool": len(s.train),
                     "num_devices": cfg.num_devices, "partition": cfg.data.partition,
                     "max_length": cfg.model.max_length, "precision": s.precision,
                     "lora_rank": cfg.lora.rank, "lora_targets": list(cfg.lora.target_modules),
                     "optimizer": cfg.train.optimizer, "lr": cfg.train.lr, "head_lr": cfg.train.head_lr,
                     "strategy": cfg.strategy.name, "steps": args.steps,
                     "batch_size": args.batch_size, "seed": args.seed,
                     "devices_updated": [t.device for t in timed], "warmup_device": warm.device,
                     "setup_s": setup_s},
        "ours": ours, "theirs": theirs,
        "ratio_ours_over_theirs": {
            "examples_per_s": ours["examples_per_s"] / theirs["examples_per_s"],
            "updates_per_s": ours["updates_per_s"] / theirs["updates_per_s"],
            "s_per_update_mean": ours["s_per_update_mean"] / theirs["s_per_update_mean"],
            "s_per_update_median": ours["s_per_update_median"] / theirs["s_per_update_median"],
        },
        "equivalence": {"max_abs_state_diff": max(diffs), "max_abs_mean_loss_diff": max(loss_diffs)},
        "memory": memory,
    }
    report(result)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
