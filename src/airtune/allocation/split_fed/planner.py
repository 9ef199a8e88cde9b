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

Without ``energy_budget_j`` the queues stay at zero and the solver schedules the largest set
that meets the deadline within the bandwidth (up to ``max_devices``).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from airtune.allocation.planner import Planner, PlannerContext, RoundInputs, RoundOutcome, planned_downlink_s
from airtune.allocation.result import Allocation
from airtune.allocation.split_fed.lyapunov import (
    EnergyQueues,
    bound_weight,
    g_inverse,
    g_without_replacement,
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
    rho: float = Field(1.0, gt=0, le=1, description="bound contraction: round t weighs rho^(T-1-t)")
    g: Literal["without_replacement", "inverse"] = Field(
        "without_replacement", description="participation penalty g(N): (K-N)/(N(K-1)) or 1/N")
    energy_budget_j: float | list[float] | None = Field(
        None, description="long-term average energy per device and round (one value or one per device); "
                          "null: no budget (queues stay 0)")
    deadline_s: float = Field(60.0, gt=0, description="per-round latency budget T_max in s")
    max_devices: int | None = Field(None, ge=1, description="cap on devices per round; null: devices_per_round")
    method: Literal["greedy", "exhaustive"] = Field("greedy", description="per-round subset search")
    orders: list[Literal["cost", "b_min"]] = Field(["cost"], min_length=1, description="greedy orderings")


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
        self.budget_j = None if o.energy_budget_j is None else np.broadcast_to(
            np.asarray(o.energy_budget_j, dtype=float), (K,)).copy()
        self.max_devices = min(o.max_devices or context.devices_per_round, K)
        self.queues = EnergyQueues.zeros(K)
        self.cum_energy_j = np.zeros(K)
        self.rounds_seen = 0

    @classmethod
    def check_link(cls, link: LinkModel) -> None:
        link.require("allocation.name = 'lyapunov' (paper 1)")

    # -- the per-round decision ------------------------------------------------------------------
    def solver_kwargs(self, inputs: RoundInputs) -> dict[str, Any]:
        """The keyword arguments of ``schedule_lyapunov`` for this round (also used by tests)."""
        c, o = self.context, self.options
        g = PARTICIPATION_FUNCTIONS[o.g]
        return dict(queues_j=self.queues, V=o.V, weight=bound_weight(inputs.round_idx, c.rounds, o.rho), g=g,
                    compute_s=inputs.compute_s, downlink_s=self.downlink_s(inputs),
                    uplink_bits=inputs.uplink_bits, power_w=c.max_power_w, channel_gain=inputs.channel_gain,
                    noise_psd_w_per_hz=c.noise_psd_w_per_hz, total_bandwidth_hz=c.total_bandwidth_hz,
                    deadline_s=o.deadline_s, compute_energy_j=inputs.compute_energy_j,
                    max_devices=self.max_devices, method=o.method, orders=tuple(o.orders))

    def downlink_s(self, inputs: RoundInputs) -> np.ndarray:
        """Downlink plus edge-server time if scheduled, at ``N = max_devices``: the link's downlink
        (``planner.planned_downlink_s``) and the server share of ``wireless.cost.server_compute_s``.

        Our choice: the deadline is checked at the largest :math:`N` the planner may pick, whose
        downlink share and server share are the smallest, so a plan that meets it meets it at the
        :math:`N` actually scheduled (the runner charges that :math:`N`).
        """
        n = self.max_devices
        return np.asarray(planned_downlink_s(self.context.link, inputs, n) + n * np.asarray(inputs.server_s_alone, float),
                          float)

    def plan(self, inputs: RoundInputs) -> Allocation:
        return schedule_lyapunov(**self.solver_kwargs(inputs))

    # -- after the round -------------------------------------------------------------------------
    def observe(self, inputs: RoundInputs, plan: Allocation, outcome: RoundOutcome) -> dict[str, Any]:
        """Advance the queues with the measured energy; log queues, budget satisfaction, solver data."""
        spent = np.where(plan.selected, outcome.energy_j, 0.0)
        self.cum_energy_j = self.cum_energy_j + spent
        self.rounds_seen += 1
        if self.budget_j is not None:
            self.queues = step_queues(self.queues, spent, plan.selected, self.budget_j)
        q = self.queues.backlog_j
        avg = self.cum_energy_j / self.rounds_seen
        report = {"lyap_queue_mean_j": float(q.mean()), "lyap_queue_max_j": float(q.max()),
                  "lyap_N": int(plan.extra.get("N", plan.num_selected)),
                  "lyap_penalty": float(plan.extra.get("penalty", np.nan)),
                  "lyap_deadline_feasible": int(np.sum(plan.extra.get("deadline_feasible", plan.selected))),
                  "lyap_round_energy_j": float(spent.sum()),
                  "lyap_avg_energy_max_j": float(avg.max())}
        if self.budget_j is not None:
            ratio = avg / np.maximum(self.budget_j, 1e-300)
            report.update({"lyap_budget_violations": int(np.sum(avg > self.budget_j * (1 + 1e-9))),
                           "lyap_budget_ratio_max": float(ratio.max())})
        return report

    # -- resume ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"queues_j": self.queues.backlog_j.copy(), "cum_energy_j": self.cum_energy_j.copy(),
                "rounds_seen": self.rounds_seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.queues = EnergyQueues(np.asarray(state["queues_j"], dtype=float))
        self.cum_energy_j = np.asarray(state["cum_energy_j"], dtype=float).copy()
        self.rounds_seen = int(state["rounds_seen"])
