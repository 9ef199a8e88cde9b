r"""TSFA as a registered allocator (``allocation.name: tsfa``) [kim2025soft] (papers.md §2.6, [R]).

Stage 1 (offline, before training): :func:`~airtune.allocation.tsfa.rank.choose_rank` picks
the structural rank from ``candidate_ranks`` with *expected* channel statistics: ``stage1_samples``
Monte-Carlo rounds of ``devices_per_round`` devices drawn at random, each with its path gain at
its round-0 distance times unit-mean Rayleigh fading, its compute latency and the downlink of
the rank-r global factors (per candidate). ``rank_policy`` says what the run trains:
``adopt`` (default, "rank determined offline" [S v2]) trains the stage-1 rank: the runner asks
:meth:`TSFAPlanner.decide_rank` before the model is built and builds the adapters at that rank
(``lora.rank`` is then only the rank of that first look, logged with the choice);
``enforce`` stops with a one-line fix when ``lora.rank`` differs; ``report`` trains
``lora.rank`` and logs ``tsfa_stage1_rank``. ``scripts/tsfa_rank.py CONFIG`` prints the table.

Stage 2 (every round): the scheduler of ``allocation.scheduler`` picks the devices, then
:func:`~airtune.allocation.tsfa.solver.solve_tsfa_round` chooses each one's kept components
:math:`m_k` and bandwidth :math:`b_k` (drift-plus-penalty [neely2010lyapunov] with the virtual
latency queue :math:`Z`). The strategy (``soft``) supplies, through ``RoundInputs.hints``, the
payload table :math:`S(m)` in bits (head included) and **each device's own** truncation-error
curve (papers.md §2.6), row :math:`k` for device :math:`k`: relative curves
:math:`\tilde\varepsilon_k(m)` and energies :math:`\varepsilon_k(0)`, so
:math:`\varepsilon_k(m) = \varepsilon_k(0)\tilde\varepsilon_k(m)` (a flat spectrum
:math:`1 - m/r` with equal energies while the scores are all zero). ``error_scale`` sets the
unit of the error term:

* ``budget`` (default, our choice): :math:`\hat\varepsilon_k(m) = \bar T^2\,\varepsilon_k(m) /
  \sum_{j} p_j^2\varepsilon_j(0)` over the scheduled devices, so the per-round objective is
  :math:`\bar T^2\,[V\,\bar e + (Z/\bar T)(T/\bar T)]` with :math:`\bar e \in [0, 1]` the
  :math:`p^2`-weighted share of the round's update energy that is dropped: :math:`V` is
  dimensionless (V = 1: dropping everything costs as much as one budget of latency at a queue
  of one budget) and stays meaningful as the update energy grows over training. Devices keep
  their energy differences (the bound's :math:`p_k^2\varepsilon_k`).
* ``absolute``: the bound's :math:`\varepsilon_k(m)` itself (scale² included, papers.md §2.6);
  :math:`V` then has units s² per squared weight and its useful value drifts with training.

The old scaling (one global curve divided by its total, :math:`V = 1`) made the choice
all-or-nothing (paper-checks.md Paper 2 item 1): see docs/results/soft.md, "Mechanism".
A device's fixed latency :math:`\tau_k` is its compute time plus its downlink time (the run's
link: an equal share of the downlink band at the server's power), so the planned round latency
equals the one the runner measures. The per-round solver models paper 2's error-free Shannon
uplink (papers.md §2.3), so the planner refuses any other ``wireless.link``.
``plan.directives.sparsity.keep_ratio`` (K,) is :math:`m_k/r` (1 for devices not scheduled).
:meth:`TSFAPlanner.observe` advances :math:`Z(t+1) = \max\{Z + T(t) - \bar T, 0\}` with the
measured round latency.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from airtune.allocation.exchange import Directives, SoftPayloadHint, SparsityDirective
from airtune.allocation.planner import Planner, PlannerContext, RoundInputs, RoundOutcome, planned_downlink_s
from airtune.allocation.result import Allocation
from airtune.allocation.tsfa.rank import RankChoice, choose_rank
from airtune.allocation.tsfa.solver import solve_tsfa_round, step_latency_queue
from airtune.errors import ConfigError
from airtune.experiment.seeds import rng as stream
from airtune.lora.soft_payload import soft_payload_table
from airtune.registry import ALLOCATORS, FADING, SCHEDULERS
from airtune.wireless.link import LinkModel

log = logging.getLogger("airtune")


class TSFAOptions(BaseModel):
    """Options of the ``tsfa`` allocator."""

    model_config = ConfigDict(extra="forbid")

    latency_budget_s: float = Field(..., gt=0, description="long-term average round latency budget T_bar in s")
    v: float = Field(0.3, ge=0, description="Lyapunov weight V of the sparsification error (dimensionless "
                     "with error_scale=budget)")
    error_scale: Literal["budget", "absolute"] = Field(
        "budget", description="unit of the error term: T_bar^2 eps_k / sum_j p_j^2 eps_j(0) (budget), or eps_k")
    candidate_ranks: list[int] = Field([2, 4, 8, 16, 32], min_length=1, description="stage-1 rank grid")
    rank_policy: Literal["adopt", "enforce", "report"] = Field(
        "adopt", description="train the stage-1 rank (adopt), stop with a fix if lora.rank differs (enforce), "
        "or train lora.rank and log the stage-1 rank (report)")
    spectrum_decay: float = Field(1.0, ge=0, description="stage-1 ideal-update spectrum sigma_i^2 ~ i^-decay")
    stage1_samples: int = Field(256, ge=1, description="Monte-Carlo channel rounds of stage 1")
    bits_per_value: int = Field(32, ge=1, le=64, description="stage-1 payload model: bits per value")
    index_coding: Literal["mask", "combinatorial", "none"] = Field("mask", description="stage-1 index coding")
    n_grid: int = Field(17, ge=2, description="deadline grid of the per-round solver")
    max_rounds: int = Field(32, ge=1, description="greedy rounds of the per-round solver's descent, grid included "
                                                  "(1: the plain grid search; solver.solve_tsfa_round)")
    descent_cells: int | None = Field(None, ge=0, description="descend only in this many grid cells either side of "
                                                              "the best one (null: all; for thousands of devices)")


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
        h = inputs.hints.soft_payload
        if h is None:
            raise ConfigError("allocation.name = 'tsfa' needs the strategy's SOFT payload table; "
                              "fix: set strategy.name=soft (or choose another allocator)")
        K, n = c.num_devices, max(1, min(c.devices_per_round, c.num_devices))
        rng = stream(c.seed, "tsfa_stage1")
        beta = c.link.mean_gain(inputs.distance_m)                                     # (K,)
        picks = np.stack([rng.choice(K, size=n, replace=False) for _ in range(o.stage1_samples)])
        fading = np.asarray(FADING.get(c.link.fading)(rng, picks.size), float).reshape(picks.shape)
        gains = beta[picks] * fading                                                    # (N, n)
        sel = np.zeros(K, bool)
        sel[:n] = True  # only the count matters for the downlink share
        ranks = sorted(set(o.candidate_ranks))
        per_rank = float(sum(d + m for d, m in c.lora_dims)) * o.bits_per_value  # bits of one rank, all matrices
        head_down = max(float(np.mean(inputs.downlink_bits)) - h.rank * per_rank, 0.0)
        fixed = []
        for r in ranks:  # mean compute + downlink of the rank-r global factors (independent of lora.rank)
            inp = RoundInputs(**{**inputs.__dict__, "downlink_bits": np.full(K, head_down + r * per_rank)})
            fixed.append(float(np.mean(self.fixed_latency_s(inp, sel))))
        head_up = float(h.payload_bits[0] - soft_payload_table(h.rank, c.lora_dims, o.bits_per_value,
                                                               o.index_coding)[0])
        return choose_rank(ranks, gains, float(np.mean(c.max_power_w)), c.noise_psd_w_per_hz,
                           c.total_bandwidth_hz, np.repeat(np.array(fixed)[:, None], n, 1), c.lora_dims,
                           o.latency_budget_s, weights=c.data_sizes[picks], spectrum_decay=o.spectrum_decay,
                           head_bits=max(head_up, 0.0), bits_per_value=o.bits_per_value,
                           index_coding=o.index_coding)

    def decide_rank(self, inputs: RoundInputs) -> int | None:
        """The LoRA rank the run must train, asked before the model is built: the stage-1 rank
        under ``rank_policy=adopt``, else None (the configured ``lora.rank``)."""
        if self.options.rank_policy != "adopt":
            return None
        choice = self.run_stage1(inputs)
        log.info("TSFA stage 1 (rank_policy=adopt): training rank %d; %s", choice.rank, choice.message)
        return choice.rank

    def _check_rank(self, rank: int) -> None:
        if self.stage1_rank == rank:
            return
        if self.options.rank_policy == "adopt":
            raise ConfigError(f"TSFA stage 1 chose rank {self.stage1_rank} but the model was built at rank {rank} "
                              "(rank_policy=adopt): the runner must build the adapters at "
                              "TSFAPlanner.decide_rank's rank; fix: run through airtune run, or set "
                              "allocation.options.rank_policy=report")
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
        sizes = c.data_sizes[idx]
        p = sizes / sizes.sum()
        eps = scaled_error_table(h, idx, p, o.error_scale, o.latency_budget_s)
        res = solve_tsfa_round(eps, h.payload_bits,
                               self.fixed_latency_s(inputs, selected)[idx], p,
                               inputs.channel_gain[idx], c.max_power_w[idx], c.noise_psd_w_per_hz,
                               c.total_bandwidth_hz, self.queue_s, o.v, n_grid=o.n_grid,
                               max_rounds=o.max_rounds, descent_cells=o.descent_cells)
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


def scaled_error_table(hint: SoftPayloadHint, idx: np.ndarray, weights: np.ndarray, scale: str,
                       budget_s: float) -> np.ndarray:
    r"""Error table (n, r+1) of the scheduled devices ``idx`` for the solver, in the unit of
    ``error_scale`` (module docstring): row :math:`k` is device :math:`k`'s own curve.

    ``budget``: :math:`\bar T^2\,\varepsilon_k(m)/\sum_j p_j^2\varepsilon_j(0)`;
    ``absolute``: :math:`\varepsilon_k(m)`. A single (r+1,) curve applies to every device,
    energies default to 1, and a flat spectrum :math:`1 - m/r` is used without a curve.
    """
    r = hint.rank
    curve = hint.error_curve
    rel = (np.broadcast_to(1.0 - np.arange(r + 1) / r, (idx.size, r + 1)) if curve is None
           else np.broadcast_to(curve, (idx.size, r + 1)) if curve.ndim == 1 else curve[idx])
    energy = np.ones(idx.size) if hint.error_energy is None else hint.error_energy[idx]
    eps = np.asarray(rel, float) * energy[:, None]
    if scale == "absolute":
        return eps
    total = float((weights**2 * eps[:, 0]).sum())
    if total <= 0:  # nothing known yet: equal energies
        eps, total = np.asarray(rel, float), float((weights**2 * np.asarray(rel, float)[:, 0]).sum())
    return eps * (budget_s**2 / total) if total > 0 else eps
