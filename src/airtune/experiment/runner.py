"""The round loop. Reads top to bottom; every formula lives in a pure function it calls.

    for rnd in rounds:
        channel  = step_channel(...)                       # fading redrawn
        plan     = allocator(...)                          # who transmits, bandwidth, power
        tasks    = strategy.configure_round(...)           # what each scheduled device trains
        updates  = engine.run(tasks)                       # local LoRA training
        radio    = radio_round(...)                        # rates, outage, latency, energy
        server   = strategy.aggregate(..., delivered)      # only updates that survived
        log + checkpoint
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from airtune.config import Config
from airtune.experiment import rundir
from airtune.experiment.checkpoint import load_checkpoint, save_checkpoint
from airtune.experiment.round import radio_round
from airtune.experiment.seeds import int_seed, rng
from airtune.experiment.setup import Setup, build
from airtune.lora.adapters import save_adapter, save_adapter_state
from airtune.metrics.records import RoundRecord, records_from_arrays
from airtune.registry import ALLOCATORS
from airtune.strategies.base import ServerState, tensor_bits
from airtune.training.engine import Engine
from airtune.training.evaluate import evaluate
from airtune.training.local import OptimConfig
from airtune.wireless.channel import step_channel

log = logging.getLogger("airtune")


@dataclass
class Totals:
    """Cumulative counters carried across rounds (and through checkpoints)."""

    sim_time_s: float = 0.0
    uplink_bits: int = 0
    downlink_bits: int = 0
    energy_j: float = 0.0
    lost_updates: int = 0
    best_accuracy: float | None = None
    last_accuracy: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def make_engine(s: Setup) -> Engine:
    t = s.cfg.train
    optim = OptimConfig(lr=t.lr, head_lr=t.head_lr, weight_decay=t.weight_decay, optimizer=t.optimizer,
                        max_grad_norm=t.max_grad_norm, precision=s.cfg.model.precision)
    return Engine(s.model, s.train, s.partitions, t.batch_size, optim, s.head_keys)


def run_experiment(cfg: Config, run_dir: Path, *, resume: bool = False,
                   on_round: Callable[[dict[str, Any]], None] | None = None,
                   stop_after_round: int | None = None) -> dict[str, Any]:
    """Run (or continue) the experiment ``cfg`` in ``run_dir``; return the summary.

    ``stop_after_round`` ends the process's work after that round's checkpoint (used by tests
    to interrupt a run); ``on_round`` receives each round's metrics record (progress display).
    """
    wall0 = time.perf_counter()
    s = build(cfg)
    engine = make_engine(s)
    server, totals, start = s.strategy.init_state(s.initial_state), Totals(), 0
    ckpt = load_checkpoint(run_dir) if resume else None
    if ckpt is not None:
        server, totals, start = ServerState(ckpt["tensors"], ckpt["extra"]), ckpt["totals"], ckpt["round"] + 1
        torch.set_rng_state(ckpt["torch_rng"])
    rundir.truncate_logs(run_dir, start)
    metrics_log, clients_log = rundir.open_logs(run_dir)
    allocator = ALLOCATORS.get(cfg.allocation.name)
    w, K = cfg.wireless, cfg.num_devices
    with metrics_log, clients_log:
        for rnd in range(start, cfg.rounds):
            t0 = time.perf_counter()
            ch = step_channel(s.channel, rng(cfg.seed, "channel", rnd), w.fading)
            plan = allocator(rng=rng(cfg.seed, "schedule", rnd), round_idx=rnd, channel_gain=ch.channel_gain,
                             max_power_w=s.devices.max_power_w, total_bandwidth_hz=w.uplink_bandwidth_hz,
                             n=cfg.devices_per_round, scheduler=cfg.allocation.scheduler)
            selected = [int(k) for k in np.flatnonzero(plan.selected)]
            seeds = {k: int_seed(cfg.seed, "batches", rnd, k) for k in selected}
            tasks = s.strategy.configure_round(rnd, server, selected, seeds, cfg.train.local_steps)
            ranks = s.strategy.device_ranks(server)  # the ranks trained this round (before any prune)
            updates = engine.run(tasks)
            ul_bits, dl_bits, samples, loss = (np.zeros(K), np.zeros(K), np.zeros(K), np.full(K, np.nan))
            for task, up in zip(tasks, updates):
                dl_bits[task.device] = tensor_bits(s.strategy.downlink_payload(task))
                ul_bits[up.device] = tensor_bits(s.strategy.uplink_payload(up))
                samples[up.device] = cfg.train.local_steps * min(cfg.train.batch_size, up.num_samples)
                loss[up.device] = up.train_loss
            radio = radio_round(cfg, ch, s.devices, plan, ul_bits, dl_bits, samples,
                                rng(cfg.seed, "outage", rnd))
            delivered = {int(k) for k in np.flatnonzero(radio.delivered)}
            lost = [k for k in selected if k not in delivered]
            if lost:
                log.info("round %d: updates of devices %s lost to outage, not aggregated", rnd, lost)
            server, report = s.strategy.aggregate(rnd, server, updates, delivered)
            acc = ev_loss = None
            if (rnd + 1) % cfg.eval_every == 0 or rnd == cfg.rounds - 1:
                engine.load_task(s.strategy.global_task(server))
                acc, ev_loss = evaluate(s.model, s.test, precision=cfg.model.precision)
            record = _round_record(rnd, totals, radio, ul_bits, dl_bits, selected, sorted(delivered), lost,
                                   acc, ev_loss, loss, report, time.perf_counter() - t0)
            metrics_log.write_many([record])
            clients_log.write_many(records_from_arrays(rnd, dict(
                device=np.arange(K), selected=plan.selected, delivered=radio.delivered,
                distance_m=ch.distance_m, channel_gain=ch.channel_gain, bandwidth_hz=plan.bandwidth_hz,
                power_w=plan.power_w, rate_bps=radio.uplink_rate_bps, payload_bits=ul_bits,
                downlink_bits=dl_bits, compute_s=radio.cost.compute_s,
                comm_s=radio.cost.uplink_s + radio.cost.downlink_s, energy_j=radio.cost.energy_j,
                success_prob=radio.success_prob, num_samples=samples, train_loss=loss,
                **_rank_column(ranks, K))))
            _checkpoint(s, engine, run_dir, rnd, server, totals)
            if on_round is not None:
                on_round(record.to_dict())
            if stop_after_round is not None and rnd >= stop_after_round:
                return {"stopped_after_round": rnd}
    summary = _summary(cfg, totals, time.perf_counter() - wall0)
    rundir.write_summary(run_dir, summary)
    return summary


def _round_record(rnd, totals: Totals, radio, ul_bits, dl_bits, selected, delivered, lost, acc, ev_loss,
                  loss, report, wall_s) -> RoundRecord:
    totals.sim_time_s += radio.cost.round_latency_s
    totals.uplink_bits += int(ul_bits.sum())
    totals.downlink_bits += int(dl_bits.sum())
    totals.energy_j += radio.cost.total_energy_j
    totals.lost_updates += len(lost)
    if acc is not None:
        totals.last_accuracy = acc
        totals.best_accuracy = acc if totals.best_accuracy is None else max(acc, totals.best_accuracy)
    delivered_loss = [loss[k] for k in delivered]
    rec = RoundRecord(
        round=rnd, sim_time_s=totals.sim_time_s, round_latency_s=radio.cost.round_latency_s,
        accuracy=acc, loss=ev_loss, train_loss=float(np.mean(delivered_loss)) if delivered_loss else None,
        uplink_bits=int(ul_bits.sum()), downlink_bits=int(dl_bits.sum()), energy_j=radio.cost.total_energy_j,
        cum_uplink_bits=totals.uplink_bits, cum_downlink_bits=totals.downlink_bits, cum_energy_j=totals.energy_j,
        selected=selected, delivered=delivered, lost=lost, wall_time_s=wall_s, extra=report)
    totals.history.append({"round": rnd, "accuracy": acc, "sim_time_s": totals.sim_time_s})
    return rec


def _rank_column(ranks: np.ndarray | None, K: int) -> dict[str, np.ndarray]:
    """``rank`` column of clients.jsonl: each device's current LoRA rank (absent without LoRA)."""
    return {} if ranks is None else {"rank": np.asarray(ranks).reshape(K)}


def _checkpoint(s: Setup, engine: Engine, run_dir: Path, rnd: int, server: ServerState, totals: Totals) -> None:
    payload = {"round": rnd, "tensors": server.tensors, "extra": server.extra, "totals": totals,
               "torch_rng": torch.get_rng_state(), "config_hash": rundir.config_hash(s.cfg)}
    export = s.strategy.export_adapter(server)

    def write_adapter(path: Path) -> None:
        if export is not None:  # a global model that no trained adapter holds (FLoRA, FlexLoRA)
            save_adapter_state(s.model, export[1], export[0], path)
            return
        engine.load_task(s.strategy.global_task(server))
        save_adapter(s.model, path)

    save_checkpoint(run_dir, payload, write_adapter if s.strategy.uses_lora else None)


def _summary(cfg: Config, totals: Totals, wall_s: float) -> dict[str, Any]:
    return {"name": cfg.name, "strategy": cfg.strategy.name, "rounds": cfg.rounds, "seed": cfg.seed,
            "final_accuracy": totals.last_accuracy, "best_accuracy": totals.best_accuracy,
            "sim_time_s": totals.sim_time_s, "uplink_bits": totals.uplink_bits,
            "downlink_bits": totals.downlink_bits, "energy_j": totals.energy_j,
            "lost_updates": totals.lost_updates, "wall_time_s": wall_s}
