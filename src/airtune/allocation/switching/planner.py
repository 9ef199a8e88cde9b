r"""Algorithm 2 of the switching paradigm [wang2025switching]: the online per-round allocator.

papers.md §3.5 [B method names, R formulas]; everything below is **[R] our reconstruction**.
Each round the planner minimises the drift-plus-penalty objective [neely2010lyapunov]

.. math::
    J(x,b,p) = V\,\mathcal G\big(x, 1-q(b,p)\big)
        + \sum_{k\ \rm active}(Q_k+\eta)\,E_k(x,b,p) - \sum_{k\ \rm active} H_k,
    \qquad E_k = E^{\rm cp}_k + p_k\,\frac{S_{m(k)}}{R_k(b_k,p_k)}

(:func:`~airtune.allocation.switching.objective.round_objective`; :math:`\mathcal G` the [R] risk-gap bound of
:mod:`airtune.allocation.switching.risk`, :math:`q_k` the outage of the run's link and :math:`R_k` the
rate it charges (``wireless/link.py``: fixed rate :math:`b\log_2(1+\theta)` with the PPP success
probability of papers.md §3.3 under ``fixed_rate_outage``, the Shannon rate otherwise), :math:`Q_k` the energy queues, :math:`\eta` the
energy-efficiency coefficient, :math:`H_k` the participation queues of constraint (7f)) by
block-coordinate descent over the three existing subproblem solvers, until :math:`J` changes
by at most ``tol`` :math:`\cdot(1+|J|)`, an iteration raises :math:`J` above the best
iterate by more than that (``stop = "no_descent"``: the switching step works on a
linearisation of :math:`\mathcal G`, so a step can go uphill and the iterates then cycle
between two assignments; measured at K = 1000 in ``benchmarks/switching_alloc.py``), or
``max_outer`` iterations:

1. **model switching** (:mod:`airtune.allocation.switching.assignment`): costs
   :math:`c_{k,m}=V\Delta\mathcal G_{k,m}+(Q_k+\eta)E_{k,m}-H_k` with :math:`\mathcal G`
   linearised at the current :math:`x`; coupling resource
   :math:`a_{k,m}=\max\{b^{\min}_{k,m}, B/N\}` (the deadline floor at :math:`p^{\max}`, and at
   least an equal share of :math:`N` = ``max_participants``, which caps the number of
   participants); pairs whose deadline cannot be met are ineligible. Capacity: :math:`B` in
   total (``risk = device``) or, with the ensemble bound (default), :math:`n_mB/N` per module
   with the quotas :math:`n_m` of :func:`~airtune.allocation.switching.risk_ensemble.ensemble_module_quotas`
   (one multiplier per module). Solved by dual ascent, or the ``greedy`` / ``one_shot`` baselines;
2. **bandwidth**: the two-tier bisection (:func:`~airtune.allocation.switching.bandwidth_tiers.bandwidth_for_switching`)
   with weights :math:`Q_k+\eta`, the upload deadline :math:`\Delta_k = T_{\max}-t^{\rm cp}_k`
   and a floor of ``min_bandwidth_fraction`` :math:`\cdot B/N` per participant (a device with
   zero weight would otherwise get 0 Hz);
3. **power**: :func:`~airtune.allocation.switching.power.solve_power` with the outage weight
   :math:`w_k=\partial\mathcal G/\partial q_k` (:func:`outage_weight`), or :math:`p^{\max}`
   (option ``power = max``).

The best iterate is returned. After the round :meth:`SwitchingPlanner.observe` advances the
queues with the **measured** energy: :math:`Q_k\leftarrow[Q_k+E_k-\bar E_k]^+`,
:math:`H_k\leftarrow[H_k+\rho-\sum_mx_{k,m}]^+`.

Module set: one owner, the strategy (``strategy.options.module_ranks``,
:mod:`airtune.strategies.switching`), which hands the ranks and each module's exact upload size
to the planner as ``RoundInputs.hints.modules`` (:class:`~airtune.allocation.exchange.ModuleSetHint`).
Allocation-only scripts build that hint themselves
(:func:`airtune.allocation.switching.objective.module_payload_bits`).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from airtune.allocation.exchange import Directives, ModuleDirective
from airtune.allocation.planner import Planner, PlannerContext, RoundInputs, RoundOutcome, planned_downlink_s
from airtune.allocation.result import Allocation
from airtune.allocation.switching.assignment import (
    SwitchingResult,
    assignment_from_modules,
    modules_from_assignment,
    switch_dual_ascent,
    switch_greedy,
    switch_one_shot,
)
from airtune.allocation.switching.bandwidth_tiers import bandwidth_for_switching
from airtune.allocation.switching.objective import RadioModel, RiskModel, round_objective
from airtune.allocation.switching.power import solve_power
from airtune.allocation.switching.power_problem import PowerProblem
from airtune.allocation.switching.problem import step_participation_queues, switching_costs
from airtune.allocation.switching.rate_model import deadline_min_bandwidth_hz
from airtune.allocation.switching.risk import RiskCoefficients
from airtune.allocation.switching.risk_ensemble import (
    ensemble_module_quotas,
)
from airtune.errors import ConfigError
from airtune.registry import ALLOCATORS
from airtune.wireless.link import LinkModel

__all__ = ["SwitchingPlanner", "SwitchingPlannerOptions"]


class SwitchingPlannerOptions(BaseModel):
    """Options of the ``model_switching`` allocator (``allocation.options``)."""

    model_config = ConfigDict(extra="forbid")

    switching: Literal["dual_ascent", "greedy", "one_shot"] = Field(
        "dual_ascent", description="model-switching solver: dual ascent (proposed) or the greedy / one-shot baselines")
    power: Literal["adaptive", "max"] = Field("adaptive", description="power control, or every device at p_max")
    energy_constraints: bool = Field(True, description="long-term per-device energy budgets (virtual queues)")
    energy_budget_j: float | None = Field(
        None, gt=0, description="per-device average energy per round; null: energy_budget_ratio x (N/K) x compute energy")
    energy_budget_ratio: float = Field(1.0, gt=0, description="scale of the automatic energy budget")
    energy_coefficient: float = Field(0.0, ge=0, description="eta: weight of energy in the per-round objective")
    V: float = Field(100.0, ge=0, description="Lyapunov trade-off: weight of the risk-gap bound")
    min_participation_rate: float | None = Field(
        None, ge=0, le=1, description="rho of the long-term participation constraint; null: 0.5 N/K")
    max_participants: PositiveInt | None = Field(None, description="N: participants per round at most; null: devices_per_round")
    deadline_s: float | None = Field(None, gt=0, description="round deadline T_max (compute + upload) in s; null: none")
    tol: float = Field(1e-4, gt=0, description="outer loop stops when J changes by <= tol (1 + |J|)")
    max_outer: PositiveInt = Field(10, description="outer (block-coordinate) iterations at most")
    dual_max_iter: PositiveInt = Field(100, description="dual-ascent iterations at most")
    dual_tol: float = Field(1e-6, gt=0, description="dual-ascent duality-gap tolerance")
    dual_patience: PositiveInt | None = Field(
        20, description="dual ascent also stops after this many iterations without a better point; null: off")
    bandwidth_search: Literal["bisection", "illinois"] = Field(
        "illinois", description="root finder of Algorithm 1's two tiers: bisection (as named in the paper) or "
                                "Illinois false position (same solution, fewer steps)")
    power_grid_points: int = Field(64, ge=3, description="coarse grid of the power solver")
    min_power_fraction: float = Field(0.01, gt=0, le=1, description="lowest power as a fraction of p_max")
    min_bandwidth_fraction: float = Field(
        0.1, ge=0, le=1, description="every participant gets at least this fraction of B / max_participants")
    risk: Literal["ensemble", "device"] = Field(
        "ensemble", description="risk-gap bound: of the uniform module ensemble (eq. 3) or per device (risk.py)")
    risk_memory: float = Field(
        0.5, ge=0, le=1, description="ensemble bound: forgetting factor of the samples each module aggregated before")
    risk_capacity: float = Field(1.0, ge=0, description="c_cap of the risk-gap bound")
    risk_generalisation: float = Field(1.0, ge=0, description="c_gen of the risk-gap bound")
    risk_prior_samples: float | None = Field(
        None, gt=0, description="D_0 of the risk-gap bound; null: the mean local data size")


_STOP_MESSAGES = {"converged": "converged", "max_outer": "max_outer reached",
                  "no_descent": "stopped (an iteration increased J; best iterate kept)"}


@ALLOCATORS.register("model_switching")
class SwitchingPlanner(Planner):
    """Online model switching, bandwidth and power (Algorithm 2 [R]); state: queues, multipliers."""

    Options = SwitchingPlannerOptions
    options: SwitchingPlannerOptions
    directives = frozenset({"modules"})
    needs_hints = frozenset({"modules"})
    uses_scheduler = False   # it chooses the devices itself

    def __init__(self, options: dict[str, Any] | None, context: PlannerContext) -> None:
        super().__init__(options, context)
        K = context.num_devices
        self.radio = RadioModel(context)
        self.energy_queue = np.zeros(K)
        self.participation_queue = np.zeros(K)
        self.mu = np.zeros(1)
        self.kept: np.ndarray | None = None          # one-shot: module kept by every device
        self.budget_j: np.ndarray | None = None      # per-device energy budget per round
        self.energy_sum_j = np.zeros(K)
        self.participation_sum = np.zeros(K)
        self.rounds_seen = 0
        self.module_samples: np.ndarray | None = None  # P_m of the ensemble bound

    @classmethod
    def check_link(cls, link: LinkModel) -> None:
        if link.mode == "fixed_rate_outage" and not (link.csi == "statistical" and link.rayleigh):
            raise ConfigError("allocation.name = 'model_switching' with wireless.link = fixed_rate_outage plans "
                              "with the closed-form PPP success probability (statistical CSI, Rayleigh fading); "
                              f"got wireless.csi = {link.csi}, wireless.fading rayleigh = {link.rayleigh}; fix: "
                              "set wireless.csi=statistical and wireless.fading=rayleigh")

    # ---------------------------------------------------------------------------------- helpers
    def modules(self, inputs: RoundInputs) -> tuple[np.ndarray, np.ndarray]:
        """Module ranks (M,) and payload bits (M,), from the strategy's hint (their one owner)."""
        hint = inputs.hints.modules
        if hint is None:
            raise ConfigError("allocation.name = 'model_switching' needs the module set from the strategy "
                              "(RoundInputs.hints.modules); fix: set strategy.name=model_switching")
        return np.asarray(hint.ranks, float), np.asarray(hint.payload_bits, float)

    def _coefficients(self) -> RiskCoefficients:
        o, d = self.options, self.context.data_sizes
        prior = o.risk_prior_samples if o.risk_prior_samples is not None else max(float(np.mean(d)), 1.0)
        return RiskCoefficients(capacity=o.risk_capacity, generalisation=o.risk_generalisation,
                                heterogeneity=0.0, prior_samples=prior)

    def _n_max(self) -> int:
        return int(self.options.max_participants or self.context.devices_per_round)

    def _rho(self) -> float:
        o, c = self.options, self.context
        return o.min_participation_rate if o.min_participation_rate is not None else \
            0.5 * self._n_max() / c.num_devices

    def _energy_weight(self) -> np.ndarray:
        q = self.energy_queue if self.options.energy_constraints else np.zeros_like(self.energy_queue)
        return q + self.options.energy_coefficient

    # ------------------------------------------------------------------------------------- plan
    def plan(self, inputs: RoundInputs) -> Allocation:
        o, c, radio = self.options, self.context, self.radio
        ranks, S = self.modules(inputs)
        K, M, B, n_max = c.num_devices, len(ranks), float(c.total_bandwidth_hz), self._n_max()
        p_max, h, dist = np.asarray(c.max_power_w, float) * np.ones(K), inputs.channel_gain, inputs.distance_m
        # plan() reads the state and returns what it decides; observe() commits it (no mutation here)
        budget = self.budget_j if self.budget_j is not None else (
            np.full(K, o.energy_budget_j) if o.energy_budget_j is not None else
            o.energy_budget_ratio * (n_max / K) * np.asarray(inputs.compute_energy_j, float))
        module_samples = self.module_samples if self.module_samples is not None else np.zeros(M)
        kept = self.kept
        D, V = np.asarray(c.data_sizes, float), float(o.V)
        risk = RiskModel(o.risk, self._coefficients(), D, ranks, module_samples)
        w_e, H = self._energy_weight(), self.participation_queue
        # upload time budget Delta_k: the deadline less compute, server and downlink time (these at
        # N = n_max, the smallest shares: our choice, conservative when fewer take part)
        slack = None if o.deadline_s is None else np.asarray(
            o.deadline_s - inputs.compute_s - n_max * np.asarray(inputs.server_s_alone, float)
            - planned_downlink_s(c.link, inputs, n_max), float)
        budget_up = None if slack is None else np.maximum(slack, 1e-9)
        if slack is None or budget_up is None:
            floors = np.zeros((K, M))
        else:
            s_b, t_b, p_b, h_b = (a.ravel() for a in np.broadcast_arrays(S[None, :], budget_up[:, None],
                                                                       p_max[:, None], h[:, None]))
            floors = deadline_min_bandwidth_hz(s_b, t_b, p_b, h_b, radio.n0, radio.interference_w,
                                               radio.rate_model, radio.theta, total_bandwidth_hz=B).reshape(K, M)
            floors = np.where(slack[:, None] > 0, floors, np.inf)
        eligible = np.isfinite(floors) & (floors <= B)
        resource = np.where(eligible, np.maximum(floors, B / n_max), B)

        x, b_est, p = np.zeros((K, M), bool), np.full(K, B / n_max), p_max.copy()
        best, trace, sw_iters, j_prev, stop = None, [], 0, None, "max_outer"
        for it in range(1, int(o.max_outer) + 1):
            # (1) model switching on the linearised bound
            succ = radio.success(dist, p, b_est, h)
            d_g = risk.marginal(x, succ)
            rate = radio.rate(b_est, p, h)[:, None]
            e_km = inputs.compute_energy_j[:, None] + np.divide(
                p[:, None] * S[None, :], rate, out=np.full((K, M), np.inf), where=rate > 0)
            cost = switching_costs(d_g, np.where(np.isfinite(e_km), e_km, 1e300), w_e, V, H)
            if it == 1:
                capacity = self._capacity(risk, succ, eligible, B, n_max)
            res, kept = self._switch(cost, resource, capacity, eligible, risk, succ, kept)
            sw_iters += res.iterations
            x = res.x
            sel = x.any(axis=1)
            # (2) bandwidth, (3) power
            b, bw_ok = np.zeros(K), True
            if sel.any():
                tiers = bandwidth_for_switching(x, S, w_e, p, h, radio.n0, B, time_budget_s=budget_up,
                                                min_bandwidth_hz=np.full(K, o.min_bandwidth_fraction * B / n_max),
                                                search=o.bandwidth_search, **radio.solver_kwargs())
                b, bw_ok = tiers.bandwidth_hz, bool(tiers.converged)
            p_new, pw_ok = self._power(x, S, b, inputs, w_e, V, risk, budget_up) if o.power == "adaptive" \
                else (p_max.copy(), True)
            inner = {"switching": bool(res.converged), "bandwidth": bw_ok, "power": pw_ok}
            j, _ = round_objective(x, b, np.where(sel, p_new, 0.0), S, inputs, radio, w_e, H, V, risk)
            trace.append(j)
            if j_prev is not None and abs(j - j_prev) <= o.tol * (1.0 + abs(j_prev)):
                stop = "converged"
            elif best is not None and j > best[0] + o.tol * (1.0 + abs(best[0])):
                stop = "no_descent"  # the linearised switching step left the best point: a cycle
            if best is None or j < best[0]:
                best = (j, x.copy(), b.copy(), p_new.copy(), res, inner)
            if stop != "max_outer":
                break
            p, b_est = np.where(sel, p_new, p_max), np.where(sel, b, B / n_max)
            j_prev = j
        assert best is not None  # max_outer >= 1: the loop ran at least once
        j, x, b, p, res, inner = best
        converged = stop == "converged" and all(inner.values())   # the outer loop and the best iterate's solvers
        mu = np.asarray(res.mu, float).copy()
        sel = x.any(axis=1)
        module = modules_from_assignment(x)
        return Allocation(
            selected=sel, bandwidth_hz=np.where(sel, b, 0.0), power_w=np.where(sel, p, 0.0), objective=j,
            converged=converged, iterations=len(trace),
            message=f"{_STOP_MESSAGES[stop]} after {len(trace)} outer iterations",
            directives=Directives(modules=ModuleDirective(module)),
            extra={"stop": stop, "inner_converged": inner, "num_modules": M, "mu": mu,
                   "budget_j": budget.copy(), "kept": None if kept is None else kept.copy(),
                   "switching_iterations": sw_iters, "objective_trace": trace, "switching_gap": res.gap,
                   "eligible_devices": int(eligible.any(axis=1).sum())})

    def _capacity(self, risk: RiskModel, succ: np.ndarray, eligible: np.ndarray, B: float,
                  n_max: int) -> float | np.ndarray:
        """Bandwidth capacity of the switching step: :math:`B` in total (``risk = device``), or per
        module :math:`n_mB/N` with the ensemble quotas :math:`n_m` (``risk = ensemble``)."""
        if risk.kind != "ensemble":
            return B
        part = eligible.any(axis=1)
        n = min(n_max, int(part.sum()))
        mean_eff = float(np.mean((succ * risk.d)[part])) if part.any() else 0.0
        return ensemble_module_quotas(n, mean_eff, risk.r, risk.p, risk.coef) * (B / n_max)

    def _switch(self, cost: np.ndarray, resource: np.ndarray, capacity: float | np.ndarray, eligible: np.ndarray,
                risk: RiskModel, succ: np.ndarray, kept: np.ndarray | None) -> tuple[SwitchingResult, np.ndarray | None]:
        """The switching step and the one-shot baseline's kept modules (decided once, then kept)."""
        o = self.options
        if o.switching == "greedy":
            return switch_greedy(cost, resource, capacity, eligible), kept
        if o.switching == "one_shot":
            if kept is None:  # decided once, for every device, then kept for ever
                kept = self._one_shot_modules(cost, eligible, risk, succ)
            return switch_one_shot(kept, cost, resource, capacity, eligible, participate="if_beneficial")[0], kept
        return switch_dual_ascent(cost, resource, capacity, eligible, max_iter=o.dual_max_iter, tol=o.dual_tol,
                                  patience=o.dual_patience), kept

    def _one_shot_modules(self, cost: np.ndarray, eligible: np.ndarray, risk: RiskModel,
                          succ: np.ndarray) -> np.ndarray:
        """Round 0 of ``one_shot``: a module for every eligible device (dual ascent with the
        ensemble quotas of all of them as per-module head counts; best module without them)."""
        part = eligible.any(axis=1)
        if risk.kind != "ensemble":
            masked = np.where(eligible, cost, np.inf)
            return np.where(np.isfinite(masked.min(axis=1)), np.argmin(masked, axis=1), -1)
        quotas = ensemble_module_quotas(int(part.sum()), float(np.mean((succ * risk.d)[part])) if part.any()
                                        else 0.0, risk.r, risk.p, risk.coef)
        res = switch_dual_ascent(cost, 1.0, quotas.astype(float), eligible, max_iter=self.options.dual_max_iter,
                                 tol=self.options.dual_tol, patience=self.options.dual_patience)
        return res.module

    def _power(self, x: np.ndarray, S: np.ndarray, b: np.ndarray, inputs: RoundInputs, w_e: np.ndarray, V: float,
               risk: RiskModel, budget_up: np.ndarray | None) -> tuple[np.ndarray, bool]:
        o, c, radio = self.options, self.context, self.radio
        sel = np.asarray(x.any(axis=1), bool)
        p_max = np.asarray(c.max_power_w, float) * np.ones(len(sel))
        if not sel.any():
            return p_max, True
        succ = radio.success(inputs.distance_m, p_max, b, inputs.channel_gain)
        w_q = risk.outage_weight(x, succ) if radio.ppp else np.zeros(len(sel))  # else success is power-free
        prob = PowerProblem(
            payload_bits=x.astype(float) @ S, bandwidth_hz=b, distance_m=inputs.distance_m, energy_weight=w_e, v=V,
            max_power_w=p_max, noise_psd_w_per_hz=radio.n0, sinr_threshold=radio.theta,
            path_loss_exponent=radio.alpha, path_gain_at_1m=radio.gain_1m,
            interferer_density_per_m2=radio.density, interferer_power_w=radio.p_int,
            min_power_w=o.min_power_fraction * p_max, risk_weight=w_q, rate_model=radio.rate_model,
            channel_gain=inputs.channel_gain, interference_w=radio.interference_w, time_budget_s=budget_up)
        sol = solve_power(prob, grid_points=o.power_grid_points)
        p = sol.power_w
        flat = (w_e <= 0) & (V * w_q <= 0)  # nothing to trade: transmit at full power
        return np.where(sel & ~flat, p, p_max), bool(sol.converged)

    # ---------------------------------------------------------------------------------- observe
    def observe(self, inputs: RoundInputs, plan: Allocation, outcome: RoundOutcome) -> dict[str, Any]:
        energy = np.asarray(outcome.energy_j, float)
        if plan.directives.modules is None:
            raise ValueError("SwitchingPlanner.observe: the plan carries no module directive (not a plan of this planner)")
        x = assignment_from_modules(plan.directives.modules.modules, plan.extra["num_modules"])
        if self.budget_j is None:          # commit what plan() decided
            self.budget_j = np.asarray(plan.extra["budget_j"], float).copy()
        if self.kept is None and plan.extra.get("kept") is not None:
            self.kept = np.asarray(plan.extra["kept"], int).copy()
        if self.module_samples is None:
            self.module_samples = np.zeros(plan.extra["num_modules"])
        self.mu = np.asarray(plan.extra["mu"], float).copy()
        if self.options.energy_constraints:
            self.energy_queue = np.maximum(self.energy_queue + energy - self.budget_j, 0.0)
        self.participation_queue = step_participation_queues(self.participation_queue, x, self._rho())
        self.energy_sum_j += energy
        self.participation_sum += plan.selected
        got = x & np.asarray(outcome.delivered, bool)[:, None]
        self.module_samples = self.options.risk_memory * self.module_samples + got.T.astype(float) @ np.asarray(
            self.context.data_sizes, float)
        self.rounds_seen += 1
        sel = plan.selected
        avg_energy = self.energy_sum_j / self.rounds_seen
        return {
            "switch_module_counts": x.sum(axis=0).astype(int).tolist(),
            "switch_iterations": int(plan.extra["switching_iterations"]),
            "switch_mu": float(np.max(plan.extra["mu"])) if np.size(plan.extra["mu"]) else 0.0,
            "switch_power_mean_w": float(np.mean(plan.power_w[sel])) if sel.any() else None,
            "switch_energy_queue_mean": float(np.mean(self.energy_queue)),
            "switch_energy_queue_max": float(np.max(self.energy_queue)),
            "switch_participation_queue_mean": float(np.mean(self.participation_queue)),
            "switch_budget_excess_j": float(np.mean(np.maximum(avg_energy - self.budget_j, 0.0))),
            "switch_min_participation_rate": float(np.min(self.participation_sum) / self.rounds_seen),
        }

    # ------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"energy_queue": self.energy_queue.copy(), "participation_queue": self.participation_queue.copy(),
                "mu": self.mu.copy(), "kept": None if self.kept is None else self.kept.copy(),
                "budget_j": None if self.budget_j is None else self.budget_j.copy(),
                "energy_sum_j": self.energy_sum_j.copy(), "participation_sum": self.participation_sum.copy(),
                "rounds_seen": self.rounds_seen,
                "module_samples": None if self.module_samples is None else self.module_samples.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.energy_queue = np.array(state["energy_queue"], float)
        self.participation_queue = np.array(state["participation_queue"], float)
        self.mu = np.array(state["mu"], float)
        self.kept = None if state["kept"] is None else np.array(state["kept"], int)
        self.budget_j = None if state["budget_j"] is None else np.array(state["budget_j"], float)
        self.energy_sum_j = np.array(state["energy_sum_j"], float)
        self.participation_sum = np.array(state["participation_sum"], float)
        self.rounds_seen = int(state["rounds_seen"])
        self.module_samples = None if state["module_samples"] is None else np.array(state["module_samples"], float)
