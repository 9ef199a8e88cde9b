r"""TSFA as a registered allocator (``allocation.name: tsfa``) [kim2025soft] (papers.md §2.6, [R]).

Stage 1 (offline, at the first round): :func:`~airtune.allocation.tsfa.rank.choose_rank` picks
the structural rank from ``candidate_ranks`` with *expected* channel statistics: ``stage1_samples``
Monte-Carlo rounds of ``devices_per_round`` devices drawn at random, each with its path gain at
its round-0 distance times unit-mean Rayleigh fading, and the mean compute + downlink latency of a
device. The run trains ``lora.rank``; ``rank_policy`` says what happens when stage 1 disagrees:
``report`` (default) logs ``tsfa_stage1_rank`` and warns, ``enforce`` stops with a one-line fix.
``scripts/tsfa_rank.py CONFIG`` prints the stage-1 table before a run.

Stage 2 (every round): the scheduler of ``allocation.scheduler`` picks the devices, then
:func:`~airtune.allocation.tsfa.solver.solve_tsfa_round` chooses each one's kept components
:math:`m_k` and bandwidth :math:`b_k` (drift-plus-penalty [neely2010lyapunov] with the virtual
latency queue :math:`Z`). The strategy (``soft``) supplies, through ``RoundInputs.hints``, the
payload table :math:`S(m)` in bits (head included) and the relative truncation-error curve of
the global factors' scores, :math:`\tilde\varepsilon(m) = \varepsilon(m)/\varepsilon(0)`
(a flat spectrum, :math:`1 - m/r`, while the scores are all zero). A device's fixed latency
:math:`\tau_k` is its compute time plus its downlink time (the run's link: an equal share of
the downlink band at the server's power), so the planned round latency equals the one the
runner measures. The per-round solver models paper 2's error-free Shannon uplink (papers.md
§2.3), so the planner refuses any other ``wireless.link``.
``plan.directives.sparsity.keep_ratio`` (K,) is :math:`m_k/r` (1 for devices not scheduled).
:meth:`TSFAPlanner.observe` advances :math:`Z(t+1) = \max\{Z + T(t) - \bar T, 0\}` with the
measured round latency.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from airtune.allocation.exchange import Directives, SparsityDirective
from airtune.allocation.planner import Planner, PlannerContext, RoundInputs, RoundOutcome, planned_downlink_s
from airtune.allocation.result import Allocation
from airtune.allocation.tsfa.rank import RankBoundCoeffs, RankChoice, choose_rank
from airtune.allocation.tsfa.solver import solve_tsfa_round, step_latency_queue
from airtune.errors import ConfigError
from airtune.experiment.seeds import rng as stream
from airtune.registry import ALLOCATORS, FADING, SCHEDULERS
from airtune.wireless.link import LinkModel

log = logging.getLogger("airtune")


class TSFAOptions(BaseModel):
    """Options of the ``tsfa`` allocator."""

    model_config = ConfigDict(extra="forbid")

    latency_budget_s: float = Field(..., gt=0, description="long-term average round latency budget T_bar in s")
    v: float = Field(1.0, ge=0, description="Lyapunov weight V of the sparsification error (s^2)")
    candidate_ranks: list[int] = Field([2, 4, 8, 16, 32], min_length=1, description="stage-1 rank grid")
    rank_policy: Literal["report", "enforce"] = Field(
        "report", description="stage-1 rank != lora.rank: log it (report) or stop with a fix (enforce)")
    rank_coeff: float = Field(1.0, ge=0, description="stage-1 weight of the rank term 1/r")
    sparsification_coeff: float = Field(1.0, ge=0, description="stage-1 weight of the forced sparsification")
    latency_coeff: float = Field(0.0, ge=0, description="stage-1 weight of the expected latency / T_bar")
    stage1_samples: int = Field(256, ge=1, description="Monte-Carlo channel rounds of stage 1")
    bits_per_value: int = Field(32, ge=1, le=64, description="stage-1 payload model: bits per value")
    index_coding: Literal["mask", "combinatorial", "none"] = Field("mask", description="stage-1 index coding")
    n_grid: int = Field(17, ge=2, description="deadline grid of the per-round solver")


@ALLOCATORS.register("tsfa")
class TSFAPlanner(Planner):
    """Offline rank choice, then per-round sparsification + bandwidth under a long-term latency budget."""

    Options = TSFAOptions
    options: TSFAOptions
    directives = frozenset({"sparsity"})
    needs_hints = frozenset({"soft_payload"})

    def __init__(self, options: dict[str, Any] | None, context: PlannerContext) -> None:
        super().__init__(options, context)
        self.queue_s = 0.0
        self.latency_sum_s = 0.0
        self.rounds = 0
        self.stage1_rank: int | None = None
        self.stage1: RankChoice | None = None

    @classmethod
    def check_link(cls, link: LinkModel) -> None:
        link.require("allocation.name = 'tsfa' (paper 2)")

    # -- helpers --------------------------------------------------------------------------------
    def fixed_latency_s(self, inputs: RoundInputs, selected: np.ndarray) -> np.ndarray:
        """Compute + edge-server + downlink latency (K,) of each device if ``selected`` are
        scheduled: the runner's definitions (``planner.planned_downlink_s``, ``server_compute_s``)."""
        n_sel = max(int(selected.sum()), 1)
        return np.asarray(np.asarray(inputs.compute_s, float) + n_sel * np.asarray(inputs.server_s_alone, float)
                          + planned_downlink_s(self.context.link, inputs, n_sel), float)

    def run_stage1(self, inputs: RoundInputs) -> RankChoice:
        """Stage 1: the structural rank from expected channel statistics (seeded Monte Carlo)."""
        o, c = self.options, self.context
        if not c.lora_dims:
            raise ConfigError("allocation.name = 'tsfa' needs LoRA (payload of rank components); "
                              "fix: use a LoRA strategy such as strategy.name=soft")
        K, n = c.num_devices, max(1, min(c.devices_per_round, c.num_devices))
        rng = stream(c.seed, "tsfa_stage1")
        beta = c.link.mean_gain(inputs.distance_m)                                     # (K,)
        picks = np.stack([rng.choice(K, size=n, replace=False) for _ in range(o.stage1_samples)])
        fading = np.asarray(FADING.get(c.link.fading)(rng, picks.size), float).reshape(picks.shape)
        gains = beta[picks] * fading                                                    # (N, n)
        sel = np.zeros(K, bool)
        sel[:n] = True  # only the count matters for the downlink share
        tau = float(np.mean(self.fixed_latency_s(inputs, np.ones(K, bool) if n == K else sel)))
        return choose_rank(o.candidate_ranks, gains, float(np.mean(c.max_power_w)), c.noise_psd_w_per_hz,
                           c.total_bandwidth_hz, tau, c.lora_dims, o.latency_budget_s,
                           RankBoundCoeffs(o.rank_coeff, o.sparsification_coeff, o.latency_coeff),
                           bits_per_value=o.bits_per_value, index_coding=o.index_coding)

    def _check_rank(self, rank: int) -> None:
        if self.stage1_rank == rank:
            return
        msg = (f"lora.rank = {rank} but TSFA stage 1 chose rank {self.stage1_rank} for "
               f"allocation.options.latency_budget_s = {self.options.latency_budget_s:g}")
        if self.options.rank_policy == "enforce":
            raise ConfigError(f"{msg}; fix: set lora.rank={self.stage1_rank} "
                              "(or allocation.options.rank_policy=report to train the configured rank)")
        log.warning("%s; training rank %d (rank_policy=report)", msg, rank)

    # -- contract -------------------------------------------------------------------------------
    def plan(self, inputs: RoundInputs) -> Allocation:
        o, c, h = self.options, self.context, inputs.hints.soft_payload
        if h is None:
            raise ConfigError("allocation.name = 'tsfa' needs the strategy's SOFT payload table; "
                              "fix: set strategy.name=soft (or choose another allocator)")
        r = h.rank
        if self.stage1_rank is None:
            self.stage1 = self.run_stage1(inputs)
            self.stage1_rank = self.stage1.rank
            log.info("TSFA stage 1: %s", self.stage1.message)
            self._check_rank(r)
        schedule = SCHEDULERS.get(c.scheduler)
        selected = np.asarray(schedule(rng=inputs.rng, round_idx=inputs.round_idx,
                                       channel_gain=inputs.channel_gain, n=c.devices_per_round), bool)
        idx = np.flatnonzero(selected)
        curve = h.error_curve
        if curve is None:
            curve = 1.0 - np.arange(r + 1) / r  # flat spectrum before the scores carry information
        eps = np.broadcast_to(np.asarray(curve, float), (idx.size, r + 1))
        sizes = c.data_sizes[idx]
        res = solve_tsfa_round(eps, h.payload_bits,
                               self.fixed_latency_s(inputs, selected)[idx], sizes / sizes.sum(),
                               inputs.channel_gain[idx], c.max_power_w[idx], c.noise_psd_w_per_hz,
                               c.total_bandwidth_hz, self.queue_s, o.v, n_grid=o.n_grid)
        K = c.num_devices
        bw, power, keep, kept = np.zeros(K), np.zeros(K), np.ones(K), np.zeros(K, np.int64)
        bw[idx], power[idx], keep[idx], kept[idx] = res.bandwidth_hz, c.max_power_w[idx], res.m / r, res.m
        return Allocation(selected=selected, bandwidth_hz=bw, power_w=power, objective=res.objective,
                          converged=res.converged, iterations=res.iterations, message=res.message,
                          directives=Directives(sparsity=SparsityDirective(keep)),
                          extra={"kept_components": kept, "latency_s": res.latency_s,
                                 "error_term": res.error_term, "feasible": res.feasible})

    def observe(self, inputs: RoundInputs, plan: Allocation, outcome: RoundOutcome) -> dict[str, Any]:
        budget = self.options.latency_budget_s
        self.queue_s = step_latency_queue(self.queue_s, outcome.round_latency_s, budget)
        self.latency_sum_s += float(outcome.round_latency_s)
        self.rounds += 1
        sel = plan.selected
        keep_ratio = plan.directives.sparsity.keep_ratio if plan.directives.sparsity is not None else np.ones(sel.size)
        return {"tsfa_queue_s": self.queue_s, "tsfa_latency_s": float(outcome.round_latency_s),
                "tsfa_planned_latency_s": float(plan.extra["latency_s"]), "tsfa_budget_s": budget,
                "tsfa_avg_latency_s": self.latency_sum_s / self.rounds,
                "tsfa_mean_keep_ratio": float(np.mean(keep_ratio[sel])) if sel.any() else None,
                "tsfa_error_term": float(plan.extra["error_term"]), "tsfa_stage1_rank": self.stage1_rank}

    def state_dict(self) -> dict[str, Any]:
        return {"queue_s": self.queue_s, "latency_sum_s": self.latency_sum_s, "rounds": self.rounds,
                "stage1_rank": self.stage1_rank}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.queue_s = float(state["queue_s"])
        self.latency_sum_s = float(state["latency_sum_s"])
        self.rounds = int(state["rounds"])
        self.stage1_rank = None if state["stage1_rank"] is None else int(state["stage1_rank"])
