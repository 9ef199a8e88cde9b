r"""Paper 1's online device scheduling and bandwidth allocation as a registered allocator.

``allocation.name = lyapunov`` runs, every round, the drift-plus-penalty solver
:func:`~airtune.allocation.split_fed.scheduling.schedule_lyapunov` (papers.md §1.6 [R], [wang2025sfl],
[neely2010lyapunov]) on the runner's causal inputs, and advances the virtual energy queues
:math:`Q_k(t+1) = \max\{Q_k(t) + a_k(t)E_k(t) - \bar E_k, 0\}` with the energy each scheduled
device actually spent (compute + upload, measured by the runner) in :meth:`observe`.

Inputs mapped from :class:`~airtune.allocation.planner.RoundInputs`: the planned upload
:math:`S_k` (for split federated LoRA the head plus every iteration's activation traffic, the
strategy's ``planned_bits``), the device compute time and energy, the channel gains. The
downlink and edge-server times come from the run's link (``wireless/link.py``) and cost model
at ``N = max_devices`` (the runner shares both among the devices actually scheduled, so the
estimate is conservative when fewer are chosen). Power is every device's maximum (papers.md
§1.3: fixed :math:`p_k`). The solver models paper 1's error-free Shannon uplink, so the
planner refuses any other ``wireless.link``.

The long-term energy budget is by default *calibrated* (``budget.py``, papers.md §5): every
round the planner also solves the round with all queues at 0 (the unconstrained policy) and
sets the budget to that policy's running mean spend per device and round over
``1 + budget_excess``. With ``energy_budget_j: null`` the queues stay at zero and the solver
schedules the largest set that meets the deadline within the bandwidth. The constraint is one
queue per device (``constraint: per_device``, papers.md §1.6's default) or one queue on the
devices' total (``aggregate``, the abstract's singular "long-term constraint"). ``N`` ranges
over 1..K unless ``max_devices`` caps it explicitly.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from airtune.allocation.planner import Planner, PlannerContext, RoundInputs, RoundOutcome, planned_downlink_s
from airtune.allocation.result import Allocation
from airtune.allocation.split_fed.budget import DEFAULT_BUDGET_EXCESS, BudgetCalibrator
from airtune.allocation.split_fed.lyapunov import (
    EnergyQueues,
    g_inverse,
    g_without_replacement,
    rho_for_first_weight,
    round_weight,
    step_aggregate_queue,
    step_queues,
)
from airtune.allocation.split_fed.scheduling import schedule_lyapunov
from airtune.registry import ALLOCATORS
from airtune.wireless.link import LinkModel

__all__ = ["LyapunovOptions", "LyapunovPlanner", "PARTICIPATION_FUNCTIONS"]

PARTICIPATION_FUNCTIONS = {"without_replacement": g_without_replacement, "inverse": g_inverse}


class LyapunovOptions(BaseModel):
    """``allocation.options`` of ``lyapunov``."""

    model_config = ConfigDict(extra="forbid")
    V: float = Field(1.0, ge=0, description="drift-plus-penalty trade-off V (J^2 per unit of bound)")
    weights: Literal["geometric", "uniform", "linear"] = Field(
        "geometric", description="round-weight shape omega_t of the bound (our reconstruction, lyapunov.round_weight): "
                                 "rho^(T-1-t), 1, or (t+1)/T")
    rho: float | None = Field(None, gt=0, le=1, description="geometric: contraction rho; null: rho = "
                                                            "first_weight^(1/(T-1)) (the same shape at any T)")
    first_weight: float = Field(0.1, gt=0, le=1, description="geometric with rho null: omega_0 (omega_(T-1) = 1)")
    g: Literal["without_replacement", "inverse"] = Field(
        "without_replacement", description="participation penalty g(N): (K-N)/(N(K-1)) or 1/N")
    energy_budget_j: float | list[float] | str | None = Field(
        "calibrated", description="long-term average energy per device and round: 'calibrated' (papers.md §5: the "
                                  "unconstrained policy overspends it by budget_excess), one value or one per device "
                                  "in J, or null (no budget; queues stay 0)")
    budget_excess: float = Field(DEFAULT_BUDGET_EXCESS, gt=0, description="calibrated budget: the unconstrained "
                                 "policy's spend is (1 + budget_excess) x the budget (papers.md §5: 0.3-0.5)")
    constraint: Literal["per_device", "aggregate"] = Field(
        "per_device", description="long-term energy constraint: one queue per device, or one on the devices' total")
    deadline_s: float = Field(60.0, gt=0, description="per-round latency budget T_max in s")

    @field_validator("energy_budget_j")
    @classmethod
    def _budget_word(cls, v: float | list[float] | str | None) -> float | list[float] | str | None:
        if isinstance(v, str) and v != "calibrated":
            raise ValueError("must be 'calibrated', a number in J, one number per device, or null")
        return v

    max_devices: int | None = Field(None, ge=1, description="explicit cap on devices per round; null: all K")
    method: Literal["greedy", "exhaustive"] = Field("greedy", description="per-round subset search")
    orders: list[Literal["cost", "b_min"]] = Field(
        ["cost", "b_min"], min_length=1,
        description="greedy orderings (default from measured gaps to the exhaustive solver, see schedule_lyapunov)")


@ALLOCATORS.register("lyapunov")
class LyapunovPlanner(Planner):
    """Online scheduling + bandwidth allocation with energy virtual queues (papers.md §1.6 [R])."""

    Options = LyapunovOptions
    options: LyapunovOptions
    uses_scheduler = False   # it chooses the devices itself

    def __init__(self, options: dict[str, Any] | None, context: PlannerContext) -> None:
        super().__init__(options, context)
        o, K = self.options, context.num_devices
        if isinstance(o.energy_budget_j, list) and len(o.energy_budget_j) != K:
            from airtune.errors import ConfigError
            raise ConfigError(f"allocation.options.energy_budget_j has {len(o.energy_budget_j)} entries but "
                              f"num_devices = {K}; fix: give one value, or one per device")
        self.fixed_budget_j: np.ndarray | None = None if o.energy_budget_j in (None, "calibrated") else np.broadcast_to(
            np.asarray(o.energy_budget_j, dtype=float), (K,)).copy()
        self.calibrator = BudgetCalibrator(o.budget_excess)
        self.max_devices = min(o.max_devices or K, K)
        self.rho = o.rho if o.rho is not None else rho_for_first_weight(o.first_weight, context.rounds)
        self.queues = EnergyQueues.zeros(1 if o.constraint == "aggregate" else K)
        self.cum_energy_j = np.zeros(K)
        self.rounds_seen = 0

    @property
    def budget_j(self) -> np.ndarray | None:
        """The per-device budget (K,) now in force: the fixed one, the calibrated one so far, or None."""
        if self.fixed_budget_j is not None:
            return self.fixed_budget_j
        if self.options.energy_budget_j == "calibrated":
            return np.full(self.context.num_devices, self.calibrator.budget_j)
        return None

    def weight(self, round_idx: int) -> float:
        r"""The bound weight :math:`\omega_t` of round ``round_idx`` (``lyapunov.round_weight``)."""
        return round_weight(round_idx, self.context.rounds, self.options.weights, self.rho)

    @classmethod
    def check_link(cls, link: LinkModel) -> None:
        link.require("allocation.name = 'lyapunov' (paper 1)")

    # -- the per-round decision ------------------------------------------------------------------
    def solver_kwargs(self, inputs: RoundInputs) -> dict[str, Any]:
        """The keyword arguments of ``schedule_lyapunov`` for this round (also used by tests)."""
        c, o = self.context, self.options
        g = PARTICIPATION_FUNCTIONS[o.g]
        q = np.broadcast_to(self.queues.backlog_j, (c.num_devices,))   # aggregate: one Q for every device
        return dict(queues_j=q, V=o.V, weight=self.weight(inputs.round_idx), g=g,
                    compute_s=inputs.compute_s, downlink_s=self.downlink_s(inputs),
                    uplink_bits=inputs.uplink_bits, power_w=c.max_power_w, channel_gain=inputs.channel_gain,
                    noise_psd_w_per_hz=c.noise_psd_w_per_hz, total_bandwidth_hz=c.total_bandwidth_hz,
                    deadline_s=o.deadline_s, compute_energy_j=inputs.compute_energy_j,
                    max_devices=self.max_devices, method=o.method, orders=tuple(o.orders))

    def downlink_s(self, inputs: RoundInputs) -> np.ndarray:
        """Downlink plus edge-server time (max_devices, K), row ``N-1`` if ``N`` are scheduled: the
        link's downlink (``planner.planned_downlink_s``) and ``N`` times the device's server time
        alone (``wireless.cost.server_compute_s``): exactly what the runner charges at that ``N``."""
        k = self.context.num_devices
        alone = np.broadcast_to(np.asarray(inputs.server_s_alone, float), (k,))
        return np.stack([planned_downlink_s(self.context.link, inputs, n) + n * alone
                         for n in range(1, self.max_devices + 1)])

    def plan(self, inputs: RoundInputs) -> Allocation:
        """This round's decision; with a calibrated budget, also the unconstrained policy's
        (queues at 0, ``budget.BudgetCalibrator``) on the same inputs, to calibrate the budget."""
        kwargs = self.solver_kwargs(inputs)
        plan = schedule_lyapunov(**kwargs)
        if self.options.energy_budget_j == "calibrated":
            free = plan if not np.any(kwargs["queues_j"]) else schedule_lyapunov(   # same inputs: same b_min table
                **{**kwargs, "queues_j": np.zeros(self.context.num_devices),
                   "b_min_hz_by_n": plan.extra["b_min_hz_by_n"]})
            plan.extra["unconstrained_energy_j"] = free.extra["per_device_energy_j"]
            plan.extra["unconstrained_N"] = free.extra["N"]
        return plan

    # -- after the round -------------------------------------------------------------------------
    def observe(self, inputs: RoundInputs, plan: Allocation, outcome: RoundOutcome) -> dict[str, Any]:
        """Advance the queues with the measured energy; log queues, budget satisfaction, solver data."""
        spent = np.where(plan.selected, outcome.energy_j, 0.0)
        self.cum_energy_j = self.cum_energy_j + spent
        self.rounds_seen += 1
        if "unconstrained_energy_j" in plan.extra:
            self.calibrator = self.calibrator.add(plan.extra["unconstrained_energy_j"])
        budget = self.budget_j
        if budget is not None:
            step = step_aggregate_queue if self.options.constraint == "aggregate" else step_queues
            self.queues = step(self.queues, spent, plan.selected, budget)
        q = self.queues.backlog_j
        avg = self.cum_energy_j / self.rounds_seen
        report = {"lyap_queue_mean_j": float(q.mean()), "lyap_queue_max_j": float(q.max()),
                  "lyap_N": int(plan.extra.get("N", plan.num_selected)),
                  "lyap_penalty": float(plan.extra.get("penalty", np.nan)),
                  "lyap_deadline_feasible": int(np.sum(plan.extra.get("deadline_feasible", plan.selected))),
                  "lyap_round_energy_j": float(spent.sum()),
                  "lyap_avg_energy_max_j": float(avg.max())}
        if budget is not None:
            ratio = avg / np.maximum(budget, 1e-300)
            report.update({"lyap_budget_j": float(budget.mean()), "lyap_weight": self.weight(inputs.round_idx),
                           "lyap_budget_violations": int(np.sum(avg > budget * (1 + 1e-9))),
                           "lyap_budget_ratio_max": float(ratio.max()),
                           "lyap_budget_ratio_total": float(avg.sum() / max(float(budget.sum()), 1e-300))})
            if "unconstrained_N" in plan.extra:
                report["lyap_unconstrained_N"] = int(plan.extra["unconstrained_N"])
        return report

    # -- resume ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"queues_j": self.queues.backlog_j.copy(), "cum_energy_j": self.cum_energy_j.copy(),
                "rounds_seen": self.rounds_seen, "calibration_total_j": self.calibrator.total_j,
                "calibration_device_rounds": self.calibrator.device_rounds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.queues = EnergyQueues(np.asarray(state["queues_j"], dtype=float))
        self.cum_energy_j = np.asarray(state["cum_energy_j"], dtype=float).copy()
        self.rounds_seen = int(state["rounds_seen"])
        self.calibrator = BudgetCalibrator(self.options.budget_excess, float(state.get("calibration_total_j", 0.0)),
                                           int(state.get("calibration_device_rounds", 0)))
