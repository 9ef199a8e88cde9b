"""The round loop. Reads top to bottom; every formula lives in a pure function it calls.

    for rnd in rounds:
        channel  = step_channel(...)                       # fading redrawn
        plan     = planner.plan(inputs)                    # who transmits, bandwidth, power, directives
        tasks    = strategy.configure_round(...)           # what each scheduled device trains
        updates  = engine.run(tasks)                       # local LoRA training
        radio    = radio_round(...)                        # rates, outage, latency, energy
                   # (train.skip_lost_updates: priced first, and only the delivered devices train)
        server   = strategy.aggregate(..., delivered)      # only updates that survived
        planner.observe(...)                               # queues (Lyapunov, energy, latency)
        log + checkpoint
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from airtune.allocation.planner import (
    Planner,
    PlannerContext,
    RoundInputs,
    RoundOutcome,
    allocation_log,
    make_planner,
)
from airtune.config import Config, config_hash
from airtune.errors import ConfigError, ResumeError
from airtune.experiment import rundir
from airtune.experiment.checkpoint import load_checkpoint, save_checkpoint
from airtune.experiment.round import radio_round
from airtune.experiment.seeds import int_seed, rng
from airtune.experiment.setup import Setup, build
from airtune.experiment.validate import exchange_error
from airtune.lora.adapters import lora_in_out_dims, save_adapter, save_adapter_state
from airtune.metrics.records import RoundRecord, records_from_arrays
from airtune.metrics.sinks import make_sinks
from airtune.registry import ALLOCATORS
from airtune.strategies.base import ServerState
from airtune.strategies.server_opt import ServerOptimizer, server_step
from airtune.strategies.weighting import weighted
from airtune.training.batched import BatchedEngine
from airtune.training.engine import Engine
from airtune.training.evaluate import ensemble_metrics, evaluate
from airtune.training.local import OptimConfig
from airtune.training.schedule import scheduled
from airtune.wireless.channel import step_channel
from airtune.wireless.cost import compute_energy_j, compute_latency_s

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
                        max_grad_norm=t.max_grad_norm, precision=s.precision, proximal_mu=t.proximal_mu,
                        loss=t.loss, logit_adjust_tau=t.logit_adjust_tau, batching=t.batching,
                        lora_b_lr_ratio=t.lora_b_lr_ratio)
    device = next(s.model.parameters()).device
    if t.engine == "batched" or (t.engine == "auto" and device.type == "cuda"):
        log.info("engine: batched, up to %d devices per pass (train.engine = %s, device %s)",
                 t.batched_max_devices, t.engine, device)
        return BatchedEngine(s.model, s.train, s.partitions, t.batch_size, optim, s.head_keys,
                             max_devices=t.batched_max_devices)
    return Engine(s.model, s.train, s.partitions, t.batch_size, optim, s.head_keys)


def apply_server_optimizer(cfg: Config, previous: ServerState, server: ServerState) -> ServerState:
    """The configured server optimiser's step on the aggregate (``strategies/server_opt.py``);
    its moments live in ``server.extra["server_opt"]`` so that checkpoints keep them."""
    o = cfg.strategy.server_optimizer
    if o.name == "none":
        return server
    opt = ServerOptimizer(o.name, o.lr, o.momentum, o.beta1, o.beta2, o.tau)
    tensors, moments = server_step(opt, previous.tensors, server.tensors, previous.extra.get("server_opt", {}))
    return ServerState(tensors, {**server.extra, "server_opt": moments})


def run_experiment(cfg: Config, run_dir: Path, *, resume: bool = False,
                   on_round: Callable[[dict[str, Any]], None] | None = None,
                   stop_after_round: int | None = None,
                   engine_factory: Callable[[Setup], Engine] | None = None) -> dict[str, Any]:
    """Run (or continue) the experiment ``cfg`` in ``run_dir``; return the summary.

    ``stop_after_round`` ends the process's work after that round's checkpoint (used by tests
    to interrupt a run); ``on_round`` receives each round's metrics record (progress display).
    ``engine_factory`` builds the engine that trains the tasks (default :func:`make_engine`, in
    this process; ``airtune.flower.GridEngine`` sends them to Flower nodes). An engine may report
    devices whose update never came back in ``engine.failed`` (device -> reason): they are lost
    like an outage, charged no bits, and not aggregated.
    """
    wall0 = time.perf_counter()
    s = build_at_planned_rank(cfg)
    engine = (engine_factory or make_engine)(s)
    server, totals, start = s.strategy.init_state(s.initial_state), Totals(), 0
    ckpt = load_checkpoint(run_dir) if resume else None
    if ckpt is not None:
        check_config_hash(ckpt, cfg, run_dir)
        server, totals, start = ServerState(ckpt["tensors"], ckpt["extra"]), Totals(**ckpt["totals"]), ckpt["round"] + 1
        torch.set_rng_state(ckpt["torch_rng"])
    rundir.truncate_logs(run_dir, start)
    metrics_log, clients_log = rundir.open_logs(run_dir)
    planner = build_planner(s)
    if ckpt is not None:
        planner.load_state_dict(ckpt.get("planner", {}))
    K = cfg.num_devices
    sinks = make_sinks(cfg.tracking, run_dir, run_dir.name, cfg.model_dump(mode="json"))
    with metrics_log, clients_log, contextlib.ExitStack() as closing:
        for sink in sinks:
            closing.callback(sink.close)
        for rnd in range(start, cfg.rounds):
            t0 = time.perf_counter()
            ch = step_channel(s.channel, rng(cfg.seed, "channel", rnd), cfg.wireless.fading)
            inputs = round_inputs(s, server, rnd, ch)
            plan = planner.plan(inputs)
            for problem in (exchange_error(inputs.hints.kinds(), s.strategy.provides_hints,
                                           f"strategy '{cfg.strategy.name}'", "hints"),
                            exchange_error(plan.directives.kinds(), getattr(planner, "directives", frozenset()),
                                           f"allocator '{cfg.allocation.name}'", "directives")):
                if problem:
                    raise ConfigError(problem)
            selected = [int(k) for k in np.flatnonzero(plan.selected)]
            seeds = {k: int_seed(cfg.seed, "batches", rnd, k) for k in selected}
            tasks = s.strategy.configure_round(rnd, server, selected, seeds, cfg.train.local_steps, plan=plan)
            tasks = scheduled(tasks, cfg.train.lr_schedule, rnd, cfg.rounds)
            ranks = s.strategy.device_ranks(server)  # the ranks trained this round (before any prune)
            if skips_lost(cfg, s, tasks, engine):
                updates, tasks, failed, radio, ul_bits, dl_bits, samples = _train_delivered(
                    s, engine, tasks, ch, plan, rnd)
            else:
                updates, tasks, failed = _train(engine, tasks, rnd)
                ul_bits, dl_bits, samples = _charged(s, tasks, updates)
                radio = price_round(s, ch, plan, ul_bits, dl_bits, samples, rnd)
            loss = np.full(K, np.nan)
            for up in updates:
                loss[up.device] = up.train_loss
            if failed:
                radio.delivered[sorted(failed)] = False  # nothing came back: not delivered, for the logs too
            loss[~radio.delivered] = np.nan  # logged for delivered updates only, whether or not the lost
            # ones were trained (train.skip_lost_updates, Flower): the same records either way
            delivered = {int(k) for k in np.flatnonzero(radio.delivered)}
            lost = [k for k in selected if k not in delivered]
            if lost:
                log.info("round %d: updates of devices %s lost to outage, not aggregated", rnd, lost)
            previous = server
            server, report = s.strategy.aggregate(rnd, server, weighted(updates, cfg.strategy.weighting), delivered)
            server = apply_server_optimizer(cfg, previous, server)
            report = {**report, **allocation_log(plan), **planner.observe(inputs, plan, RoundOutcome(
                radio.delivered, radio.success_prob, radio.cost.energy_j, radio.cost.latency_s, ul_bits,
                radio.cost.round_latency_s))}
            acc = ev_loss = None
            if (rnd + 1) % cfg.eval_every == 0 or rnd == cfg.rounds - 1:
                acc, ev_loss = evaluate_global(s, engine, server)
            record = _round_record(rnd, totals, radio, ul_bits, dl_bits, selected, sorted(delivered), lost,
                                   acc, ev_loss, loss, report, time.perf_counter() - t0)
            metrics_log.write_many([record])
            clients_log.write_many(records_from_arrays(rnd, dict(
                device=np.arange(K), selected=plan.selected, delivered=radio.delivered,
                distance_m=ch.distance_m, channel_gain=ch.channel_gain, bandwidth_hz=plan.bandwidth_hz,
                power_w=plan.power_w, rate_bps=radio.uplink_rate_bps, sinr=radio.sinr,
                capacity_bps=radio.capacity_bps, payload_bits=ul_bits,
                downlink_bits=dl_bits, compute_s=radio.cost.compute_s, server_s=radio.cost.server_s,
                comm_s=radio.cost.uplink_s + radio.cost.downlink_s, energy_j=radio.cost.energy_j,
                success_prob=radio.success_prob, num_samples=samples, train_loss=loss,
                **_rank_column(ranks, K))))
            _checkpoint(s, engine, run_dir, rnd, server, totals, planner)
            for sink in sinks:               # mirrors of metrics.jsonl (tracking section)
                sink.log(record.to_dict())
            if on_round is not None:
                on_round(record.to_dict())
            if stop_after_round is not None and rnd >= stop_after_round:
                return {"stopped_after_round": rnd}
    summary = _summary(cfg, totals, time.perf_counter() - wall0)
    rundir.write_summary(run_dir, summary)
    return summary


def skips_lost(cfg: Config, s: Setup, tasks: list, engine: object) -> bool:
    """Whether this round prices the radio before training and trains only the devices whose
    upload will be decoded (``train.skip_lost_updates``): the strategy's bits must follow from the
    task (``Strategy.bits_known_before_training``), no task may start from another's result
    (``ClientTask.chain``), and the engine must train in this process: a remote engine
    (``airtune.flower.GridEngine``) reports dead nodes in ``engine.failed``, whose devices are
    charged no bits, which only sending every task reveals. Each update has its own seed
    (``Engine.run_one``), so the delivered updates are the ones the full round computes."""
    return (cfg.train.skip_lost_updates and s.strategy.bits_known_before_training
            and isinstance(engine, Engine) and not any(t.chain for t in tasks))


def _train(engine: Engine, tasks: list, rnd: int):
    """Train ``tasks``; the updates, the tasks that returned one, and the failed devices."""
    updates = engine.run(tasks)
    failed = dict(getattr(engine, "failed", None) or {})  # device -> reason (a remote engine's dead node)
    if failed:
        tasks = [t for t in tasks if t.device not in failed]
        log.warning("round %d: no update from devices %s (%s): lost, not aggregated", rnd, sorted(failed),
                    "; ".join(sorted(set(failed.values()))))
    return updates, tasks, failed


def _charged(s: Setup, tasks: list, updates: list | None):
    """(K,) uplink bits, downlink bits and samples of the round; from the updates, or, when
    ``updates`` is None, from the tasks alone (``Strategy.bits_before_training``)."""
    K = s.cfg.num_devices
    ul_bits, dl_bits, samples = np.zeros(K), np.zeros(K), np.zeros(K)
    for i, task in enumerate(tasks):
        if updates is None:
            up_b, dl_b = s.strategy.bits_before_training(task)
        else:
            up = updates[i]
            up_b, dl_b = s.strategy.uplink_bits(up), s.strategy.downlink_bits(task, up)
        dl_bits[task.device] += dl_b  # += : a device may train several modules (switching)
        ul_bits[task.device] += up_b
        samples[task.device] += s.samples_per_round[task.device]
    return ul_bits, dl_bits, samples


def _train_delivered(s: Setup, engine: Engine, tasks: list, ch, plan, rnd: int):
    """Price the round from the tasks, then train only the devices whose upload is decoded (an
    in-process engine, :func:`skips_lost`: no device fails on it)."""
    ul_bits, dl_bits, samples = _charged(s, tasks, None)
    radio = price_round(s, ch, plan, ul_bits, dl_bits, samples, rnd)
    updates, trained, failed = _train(engine, [t for t in tasks if radio.delivered[t.device]], rnd)
    return updates, trained, failed, radio, ul_bits, dl_bits, samples


def price_round(s: Setup, ch, plan, ul_bits, dl_bits, samples, rnd: int):
    """The round's radio outcome and costs (``experiment/round.radio_round``) with the run's link,
    device profiles, device/server compute split and the round's outage stream."""
    return radio_round(s.link, ch, s.devices, plan, ul_bits, dl_bits, samples, rng(s.cfg.seed, "outage", rnd),
                       s.strategy.device_compute_fraction(),
                       s.train_flops_per_sample * s.strategy.server_compute_fraction(),
                       s.cfg.wireless.server_flops_per_s)


def check_config_hash(ckpt: dict[str, Any], cfg: Config, run_dir: Path) -> None:
    """Refuse to resume a checkpoint written under another config (e.g. an edited config.resolved.yaml)."""
    stored, now = ckpt.get("config_hash"), config_hash(cfg)
    if stored != now:
        raise ResumeError(f"--resume '{run_dir}': the checkpoint was written under config hash {stored}, "
                          f"but {rundir.CONFIG} now hashes to {now}; fix: restore the run's {rundir.CONFIG} "
                          "or start a new run with --out")


def build_at_planned_rank(cfg: Config) -> Setup:
    """``build(cfg)``, rebuilt at the LoRA rank the allocator decides before training when it
    decides one (``Planner.decide_rank``: TSFA stage 1 with ``rank_policy=adopt``, paper 2)."""
    s = build(cfg)
    decide = getattr(build_planner(s), "decide_rank", None)
    if decide is None or not s.strategy.uses_lora:
        return s
    ch = step_channel(s.channel, rng(cfg.seed, "channel", 0), cfg.wireless.fading)
    rank = decide(round_inputs(s, s.strategy.init_state(s.initial_state), 0, ch))
    if rank is None or rank == cfg.lora.rank:
        return s
    log.info("allocator '%s' decided LoRA rank %d (lora.rank = %d): rebuilding the adapters",
             cfg.allocation.name, rank, cfg.lora.rank)
    return build(cfg.model_copy(update={"lora": cfg.lora.model_copy(update={"rank": int(rank)})}))


def build_planner(s: Setup) -> Planner:
    """The round's allocator (``allocation.name``) with its options and the run constants."""
    cfg = s.cfg
    context = PlannerContext(
        num_devices=cfg.num_devices, devices_per_round=cfg.devices_per_round, rounds=cfg.rounds,
        cpu_freq_hz=s.devices.cpu_freq_hz, max_power_w=s.devices.max_power_w, kappa=s.devices.kappa,
        data_sizes=np.array([len(p) for p in s.partitions], dtype=float), link=s.link,
        lora_dims=lora_in_out_dims(s.model) if s.strategy.uses_lora else [], seed=cfg.seed,
        scheduler=cfg.allocation.scheduler, label_counts=np.asarray(s.label_counts, dtype=float))
    return make_planner(ALLOCATORS.get(cfg.allocation.name), cfg.allocation.options, context)


def round_inputs(s: Setup, server: ServerState, rnd: int, ch) -> RoundInputs:
    """What the allocator knows before round ``rnd``: channel, planned payloads, compute cost."""
    cfg, dev = s.cfg, s.devices
    ul, dl = s.strategy.planned_bits(server, cfg.num_devices)
    samples = s.samples_per_round
    cycles = dev.cycles_per_sample * s.strategy.device_compute_fraction()
    return RoundInputs(round_idx=rnd, rng=rng(cfg.seed, "schedule", rnd), channel_gain=s.link.planner_gain(ch),
                       distance_m=ch.distance_m, uplink_bits=ul, downlink_bits=dl,
                       compute_s=compute_latency_s(cycles, samples, dev.cpu_freq_hz),
                       compute_energy_j=compute_energy_j(dev.kappa, cycles, samples, dev.cpu_freq_hz),
                       hints=s.strategy.planner_hints(server),
                       server_s_alone=(s.train_flops_per_sample * s.strategy.server_compute_fraction() * samples
                                       / cfg.wireless.server_flops_per_s))


def evaluate_global(s: Setup, engine: Engine, server: ServerState) -> tuple[float, float]:
    """Test accuracy and loss of the global model (a uniform ensemble when the strategy has several)."""
    tasks = s.strategy.eval_tasks(server)
    precision = s.precision
    if len(tasks) == 1:
        engine.load_task(tasks[0])
        return evaluate(s.model, s.test, precision=precision)
    return ensemble_metrics([lambda t=t: engine.load_task(t) for t in tasks], s.model, s.test, precision)


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


def _checkpoint(s: Setup, engine: Engine, run_dir: Path, rnd: int, server: ServerState, totals: Totals,
                planner: Planner) -> None:
    payload = {"round": rnd, "tensors": server.tensors, "extra": server.extra, "totals": asdict(totals),
               "planner": planner.state_dict(),
               "torch_rng": torch.get_rng_state(), "config_hash": config_hash(s.cfg)}
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
