r"""Algorithm 2 of the switching paradigm [wang2025switching]: the online per-round allocator.

Seed text §IV (prose and equation numbers; symbols lost, so formulas are **[R] our
reconstruction**). Each round :math:`t` the planner minimises the per-round slice of (7a),

.. math::
    J(x,b,p) = V\,\mathcal G\big(x, s(x,b,p)\big) + \sum_{k\ \rm active}(\lambda + Q_k)\,E_k(x,b,p),
    \qquad E_k = E^{\rm cp}_k + p_k\,\frac{S_{m(k)}}{R_k}

(:math:`\lambda` = ``energy_coefficient``, the paper's energy-efficiency coefficient, priced by
default; :math:`Q_k` the energy queues of the "w/ energy constraints" variant,
``energy_constraints = true``; :math:`\mathcal G` the risk-gap bound, ``risk``: by default the
Theorem-1-shaped recursion of :mod:`~airtune.allocation.switching.risk_theorem`, whose module gaps
:math:`G_m(t)` the planner keeps and steps with the deliveries in :meth:`SwitchingPlanner.observe`,
and whose heterogeneity term reads each device's measured dissimilarity from the strategy's
``dissimilarity`` hint), in the order of
Algorithm 2 (the prose: "the variables of transmit power and bandwidth allocation are updated
iteratively until the objective converged, and then the model switching solutions are
updated"):

1. **model switching once** (``switching``):

   * ``online`` (proposed, eqs. 10-12, :mod:`~airtune.allocation.switching.online`): one dual
     step on each device's multiplier of the long-term participation constraint (7f), one
     projected descent step on the relaxed switching variables with the *previous* round's
     costs :math:`c_{k,m}=V\Delta\mathcal G_{k,m}+(\lambda+Q_k)E_{k,m}`, then rounding;
   * ``greedy`` (baseline, "optimizes short-term slice of (8a)"): each device takes the module
     of lowest cost this round, :math:`\min_m c_{k,m}(t)<0`; no multipliers, no queues;
   * ``one_shot`` (baseline, "implements model switching once and follows vanilla FedLoRA
     thereafter"): the greedy choice in round 0 for every device, kept; every round random
     scheduling of :math:`N`, equal bandwidth, :math:`p^{\max}` (the vanilla FedLoRA baseline);

   at most :math:`N` = ``max_participants`` take part (our choice: the simulator trains every
   participant; with more candidates, the :math:`N` of lowest cost are kept);
2. **power and bandwidth until J converges** (``tol``, ``max_inner``): bandwidth by Algorithm 1
   and power by :func:`~airtune.allocation.switching.power.solve_power` (or :math:`p^{\max}`,
   ``power = max``). On a fixed-slot link (``wireless.upload_slot_s``: rate :math:`S_m/T`,
   threshold :math:`\theta_{k,m} = 2^{S_m/(b_kT)}-1`, so reliability depends on the module, the
   bandwidth and the power) the bandwidth step is
   :func:`~airtune.allocation.switching.bandwidth_reliability.reliability_bandwidth`
   (reliability, Lambert W + Newton + two-tier bisection); on other links module choice does
   not change reliability and the bandwidth step is the energy two-tier bisection of
   :mod:`~airtune.allocation.switching.bandwidth_tiers`.

After the round :meth:`SwitchingPlanner.observe` commits the multipliers, the relaxed
variables, the costs for the next round's step, and (variant) the queues
:math:`Q_k\leftarrow[Q_k+E_k-\bar E_k]^+` with the **measured** energy.

Module set: one owner, the strategy (``strategy.options.module_ranks``), handed over as
``RoundInputs.hints.modules`` (:class:`~airtune.allocation.exchange.ModuleSetHint`).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from airtune.allocation.exchange import Directives, ModuleDirective
from airtune.allocation.planner import Planner, PlannerContext, RoundInputs, RoundOutcome, planned_downlink_s
from airtune.allocation.result import Allocation
from airtune.allocation.switching.assignment import assignment_from_modules
from airtune.allocation.switching.inner_steps import step_bandwidth, step_power
from airtune.allocation.switching.objective import RadioModel, RiskModel, round_objective
from airtune.allocation.switching.online import dual_step, primal_step, round_relaxed
from airtune.allocation.switching.rate_model import deadline_min_bandwidth_hz
from airtune.allocation.switching.risk import RiskCoefficients
from airtune.allocation.switching.risk_theorem import TheoremCoefficients, initial_module_gap, module_gap_step
from airtune.errors import ConfigError
from airtune.registry import ALLOCATORS
from airtune.wireless.link import LinkModel

__all__ = ["SwitchingPlanner", "SwitchingPlannerOptions"]


class SwitchingPlannerOptions(BaseModel):
    """Options of the ``model_switching`` allocator (``allocation.options``)."""

    model_config = ConfigDict(extra="forbid")

    switching: Literal["online", "greedy", "one_shot"] = Field(
        "online", description="model switching: online primal-dual (proposed, eqs. 10-12), or the greedy / "
                              "one-shot baselines")
    power: Literal["adaptive", "max"] = Field("adaptive", description="power control, or every device at p_max")
    energy_coefficient: float = Field(
        1.0, ge=0, description="lambda: price of energy (per J) in the objective, the paper's energy-efficiency "
                               "coefficient (default from the measurement in docs/results/switching.md)")
    energy_constraints: bool = Field(
        False, description="the 'w/ energy constraints' variant: long-term per-device energy budgets (queues)")
    energy_budget_j: float | None = Field(
        None, gt=0, description="variant: per-device average energy per round; null: energy_budget_ratio x (N/K) x "
                                "compute energy")
    energy_budget_ratio: float = Field(1.0, gt=0, description="variant: scale of the automatic energy budget")
    V: float | None = Field(
        None, ge=0, description="weight of the risk-gap bound against the priced energy; null: 100 (risk ensemble / "
                                "device), 100 K (risk theorem: a device's weight in it is D_k / D ~ 1/K)")
    min_participation_rate: float | None = Field(
        None, ge=0, le=1, description="rho of the long-term participation constraint (7f); null: 0.5 N/K")
    max_participants: PositiveInt | None = Field(None, description="N: participants per round at most; null: "
                                                                   "devices_per_round")
    primal_step: float = Field(1.0, gt=0, description="alpha_0 of eq. 12, relative to the round's largest benefit "
                                                      "-min c (a step of 1 moves the best device fully in)")
    dual_step: float = Field(0.5, gt=0, description="beta_0 of eq. 11, in units of the round's largest benefit -min c")
    rounding: Literal["threshold", "randomized"] = Field(
        "threshold", description="integer solution from the relaxed switching variables: take part when "
                                 "the relaxed participation sum_m x_m >= 1/2, in the module of largest x_m; or "
                                 "sampled with the relaxed values as probabilities")
    deadline_s: float | None = Field(None, gt=0, description="round deadline (compute + upload) in s; null: none")
    tol: float = Field(1e-6, gt=0, description="power-bandwidth loop stops when J changes by <= tol (1 + |J|)")
    max_inner: PositiveInt = Field(20, description="power-bandwidth iterations at most")
    bandwidth_search: Literal["bisection", "illinois"] = Field(
        "illinois", description="links without an upload slot: root finder of the energy two-tier search")
    power_grid_points: int = Field(64, ge=3, description="coarse grid of the power solver")
    min_power_fraction: float = Field(0.01, gt=0, le=1, description="lowest power as a fraction of p_max")
    min_bandwidth_fraction: float = Field(
        0.1, ge=0, le=1, description="every participant gets at least this fraction of B / max_participants")
    risk: Literal["theorem", "ensemble", "device"] = Field(
        "theorem", description="risk-gap bound: Theorem-1 shape (risk_theorem.py: per-module SGD recursion with "
                               "outage, heterogeneity and foundation-model terms), or ours: the uniform module "
                               "ensemble's sqrt(r / samples) (risk_ensemble.py) or per device (risk.py)")
    risk_memory: float = Field(
        0.5, ge=0, le=1, description="ensemble bound: forgetting factor of the samples each module aggregated before")
    risk_capacity: float = Field(1.0, ge=0, description="c_cap of the risk-gap bound")
    risk_generalisation: float = Field(1.0, ge=0, description="c_gen of the risk-gap bound")
    risk_prior_samples: float | None = Field(
        None, gt=0, description="D_0 of the risk-gap bound; null: the mean local data size")
    risk_contraction: float = Field(0.1, gt=0, le=1, description="theorem bound: mu / L, contraction per round")
    risk_zeta1: float = Field(0.1, ge=0, lt=0.25, description="theorem bound: zeta_1 of Assumption 3 (< 1/4)")
    risk_noise: float = Field(0.01, ge=0, description="theorem bound: c_2 = 2 zeta_2 / L of Assumption 3")
    risk_heterogeneity: float = Field(
        0.01, ge=0, description="theorem bound: c_het, weight of each device's measured dissimilarity squared")
    risk_foundation_gap: float = Field(
        1.0, ge=0, description="theorem bound: g_fm, the foundation model's gap (>= risk_capacity r_min^-1/2)")


_STOP = {"converged": "converged", "max_inner": "max_inner reached", "fixed": "no optimisation (one-shot)"}


@ALLOCATORS.register("model_switching")
class SwitchingPlanner(Planner):
    """Online model switching, then power and bandwidth (Algorithm 2 [R]); state: multipliers, relaxed x."""

    Options = SwitchingPlannerOptions
    options: SwitchingPlannerOptions
    directives = frozenset({"modules"})
    needs_hints = frozenset({"modules", "dissimilarity"})
    uses_scheduler = False   # it chooses the devices itself

    def __init__(self, options: dict[str, Any] | None, context: PlannerContext) -> None:
        super().__init__(options, context)
        K = context.num_devices
        self.radio = RadioModel(context)
        self.energy_queue = np.zeros(K)
        self.multiplier = np.zeros(K)                 # lambda_k of eq. 11
        self.x_relaxed: np.ndarray | None = None      # relaxed switching variables (K, M)
        self.prev_cost: np.ndarray | None = None      # c(t-1) (K, M) for eq. 12
        self.kept: np.ndarray | None = None           # one-shot: module kept by every device
        self.budget_j: np.ndarray | None = None
        self.energy_sum_j = np.zeros(K)
        self.participation_sum = np.zeros(K)
        self.rounds_seen = 0
        self.module_samples: np.ndarray | None = None  # P_m of the ensemble bound
        self.module_gap: np.ndarray | None = None      # G_m(t) of the theorem bound

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

    def _theorem(self) -> TheoremCoefficients:
        o = self.options
        return TheoremCoefficients(contraction=o.risk_contraction, zeta1=o.risk_zeta1, noise=o.risk_noise,
                                   heterogeneity=o.risk_heterogeneity, capacity=o.risk_capacity,
                                   foundation_gap=o.risk_foundation_gap)

    def _v(self) -> float:
        o = self.options
        if o.V is not None:
            return float(o.V)
        return 100.0 * (self.context.num_devices if o.risk == "theorem" else 1.0)

    def _gap(self, ranks: np.ndarray) -> np.ndarray:
        """G_m(t) of the theorem bound: the state, or G_m(0) before the first round."""
        if self.module_gap is not None:
            return self.module_gap
        try:
            return initial_module_gap(ranks, self._theorem())
        except ValueError as exc:
            raise ConfigError(f"allocation.options.risk_foundation_gap = {self.options.risk_foundation_gap}: {exc}; "
                              "fix: raise risk_foundation_gap or lower risk_capacity") from None

    @staticmethod
    def dissimilarity(inputs: RoundInputs) -> np.ndarray | float:
        r""":math:`\delta_k` (K,) from the strategy's hint; 0 without one (our choice: the allocation-only
        scripts and benchmarks send no hint; a run always does, ``model_switching`` declares it)."""
        hint = inputs.hints.dissimilarity
        return 0.0 if hint is None else np.asarray(hint.values, float)

    def risk_model(self, inputs: RoundInputs, ranks: np.ndarray) -> RiskModel:
        """The bound of ``risk`` with this round's state (module samples, module gaps, dissimilarities)."""
        o, c = self.options, self.context
        module_samples = self.module_samples if self.module_samples is not None else np.zeros(len(ranks))
        gap = self._gap(ranks) if o.risk == "theorem" else None
        return RiskModel(o.risk, self._coefficients(), np.asarray(c.data_sizes, float), ranks, module_samples,
                         module_gap=gap, dissimilarity=self.dissimilarity(inputs), theorem=self._theorem())

    def _n_max(self) -> int:
        return int(self.options.max_participants or self.context.devices_per_round)

    def _rho(self) -> float:
        o, c = self.options, self.context
        return o.min_participation_rate if o.min_participation_rate is not None else \
            0.5 * self._n_max() / c.num_devices

    def _energy_weight(self) -> np.ndarray:
        q = self.energy_queue if self.options.energy_constraints else np.zeros_like(self.energy_queue)
        return q + self.options.energy_coefficient

    def module_costs(self, x: np.ndarray, b: np.ndarray, p: np.ndarray, inputs: RoundInputs, S: np.ndarray,
                     risk: RiskModel, w_e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""Linear switching costs (9) :math:`c_{k,m} = V\Delta\mathcal G_{k,m}+(\lambda+Q_k)E_{k,m}` (K, M) and
        the success probabilities :math:`s_{k,m}` (K, M) (on a fixed-slot link each module's own threshold).

        Our choice: every module is priced at the device's bandwidth ``b`` (idle devices :math:`B/N`) and at
        :math:`p^{\max}` (the power step lowers it afterwards). At the planned power a device whose module
        fails has the same near-zero success with every module, and so no gradient towards a smaller one
        (measured: a device moved from 40 m to 300 m kept rank 32 at 2 mW). ``p`` is unused."""
        c, radio = self.context, self.radio
        sel = np.asarray(x.any(axis=1), bool)
        p_max = np.asarray(c.max_power_w, float) * np.ones(len(sel))
        b_eval = np.where(sel, b, c.total_bandwidth_hz / self._n_max())
        p_eval = p_max
        succ = radio.module_success(inputs.distance_m, p_eval, b_eval, inputs.channel_gain, S)
        energy = radio.module_energy_j(inputs.compute_energy_j, p_eval, b_eval, inputs.channel_gain, S)
        d_g = risk.module_marginal(x, succ)
        cost = self._v() * d_g + w_e[:, None] * np.where(np.isfinite(energy), energy, 1e300)
        return cost, succ

    def _eligible(self, inputs: RoundInputs, S: np.ndarray, p_max: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Pairs (K, M) that can meet the deadline and the upload time budget (K,) (None: no deadline)."""
        o, c, radio = self.options, self.context, self.radio
        K, M, n_max, B = c.num_devices, len(S), self._n_max(), float(c.total_bandwidth_hz)
        if o.deadline_s is None:
            return np.ones((K, M), bool), None
        slack = np.asarray(o.deadline_s - inputs.compute_s - n_max * np.asarray(inputs.server_s_alone, float)
                           - planned_downlink_s(c.link, inputs, n_max), float)
        budget_up = np.maximum(slack, 1e-9)
        if radio.slot:
            assert c.link.upload_slot_s is not None
            return np.repeat((slack >= c.link.upload_slot_s)[:, None], M, axis=1), budget_up
        s_b, t_b, p_b, h_b = (a.ravel() for a in np.broadcast_arrays(S[None, :], budget_up[:, None], p_max[:, None],
                                                                   inputs.channel_gain[:, None]))
        floors = deadline_min_bandwidth_hz(s_b, t_b, p_b, h_b, radio.n0, radio.interference_w, radio.rate_model,
                                           radio.theta, total_bandwidth_hz=B).reshape(K, M)
        floors = np.where(slack[:, None] > 0, floors, np.inf)
        return np.isfinite(floors) & (floors <= B / n_max), budget_up

    def _cap(self, module: np.ndarray, score: np.ndarray) -> np.ndarray:
        """Keep at most N participants: those of lowest ``score`` (K,)."""
        on = np.flatnonzero(module >= 0)
        n_max = self._n_max()
        if on.size <= n_max:
            return module
        keep = on[np.argsort(score[on], kind="stable")[:n_max]]
        out = -np.ones_like(module)
        out[keep] = module[keep]
        return out

    # ------------------------------------------------------------------------------------- plan
    def plan(self, inputs: RoundInputs) -> Allocation:
        o, c, radio = self.options, self.context, self.radio
        ranks, S = self.modules(inputs)
        K, M, B, n_max = c.num_devices, len(ranks), float(c.total_bandwidth_hz), self._n_max()
        p_max = np.asarray(c.max_power_w, float) * np.ones(K)
        # plan() reads the state and returns what it decides; observe() commits it (no mutation here)
        budget = self.budget_j if self.budget_j is not None else (
            np.full(K, o.energy_budget_j) if o.energy_budget_j is not None else
            o.energy_budget_ratio * (n_max / K) * np.asarray(inputs.compute_energy_j, float))
        risk = self.risk_model(inputs, ranks)
        w_e, V = self._energy_weight(), self._v()
        eligible, budget_up = self._eligible(inputs, S, p_max)
        x_rel = self.x_relaxed if self.x_relaxed is not None else np.zeros((K, M))
        lam, kept = self.multiplier, self.kept
        idle = np.zeros((K, M), bool)
        nominal_b = np.full(K, B / n_max)

        # (1) model switching, once per round
        if o.switching == "one_shot":
            if kept is None:   # the single switch: each device's short-term best module
                cost0, _ = self.module_costs(idle, nominal_b, p_max, inputs, S, risk, w_e)
                masked = np.where(eligible, cost0, np.inf)
                kept = np.where(np.isfinite(masked.min(axis=1)), np.argmin(masked, axis=1), -1)
            able = np.flatnonzero((kept >= 0) & eligible[np.arange(K), np.maximum(kept, 0)])
            pick = inputs.rng.choice(able, size=min(n_max, able.size), replace=False)   # vanilla FedLoRA
            module = -np.ones(K, int)
            module[pick] = kept[pick]
        elif o.switching == "greedy":
            cost_now, _ = self.module_costs(idle, nominal_b, p_max, inputs, S, risk, w_e)
            masked = np.where(eligible, cost_now, np.inf)
            lowest = masked.min(axis=1)
            module = self._cap(np.where(lowest < 0, np.argmin(masked, axis=1), -1), lowest)
        else:
            prev = self.prev_cost
            if prev is None:   # round 0 has no previous round: its own costs (our choice)
                prev, _ = self.module_costs(idle, nominal_b, p_max, inputs, S, risk, w_e)
            scale = max(float(-np.min(prev, initial=0.0)), 1e-300)   # the round's largest benefit
            lam = dual_step(lam, x_rel, self._rho(), o.dual_step * scale)                     # eq. 11
            x_rel = primal_step(x_rel, np.minimum(prev, 1e300), lam, o.primal_step / scale, eligible)  # eq. 12
            module = round_relaxed(x_rel, o.rounding, inputs.rng)
            score = np.where(module >= 0, prev[np.arange(K), np.maximum(module, 0)] - lam, np.inf)
            module = self._cap(module, score)
        x = assignment_from_modules(module, M)
        sel = np.asarray(x.any(axis=1), bool)
        n = int(sel.sum())

        # (2) power and bandwidth until J converges
        b = np.where(sel, B / max(n, 1), 0.0)
        p = np.where(sel, p_max, 0.0)
        trace: list[float] = []
        stop, inner_ok = "fixed", True
        best: tuple[float, np.ndarray, np.ndarray] | None = None
        if n and o.switching != "one_shot":
            stop = "max_inner"
            j_prev = None
            for _ in range(int(o.max_inner)):
                b, bw_ok = step_bandwidth(o, c, radio, n_max, V, x, S, b, p, inputs, risk, w_e, budget_up)
                p, pw_ok = step_power(o, c, radio, V, x, S, b, inputs, w_e, risk, budget_up) if o.power == "adaptive" \
                    else (np.where(sel, p_max, 0.0), True)
                inner_ok = bw_ok and pw_ok
                j, _ = round_objective(x, b, np.where(sel, p, 0.0), S, inputs, radio, w_e, np.zeros(K), V, risk)
                trace.append(j)
                if best is None or j < best[0]:
                    best = (j, b.copy(), p.copy())
                if j_prev is not None and abs(j - j_prev) <= o.tol * (1.0 + abs(j_prev)):
                    stop = "converged"
                    break
                j_prev = j
            assert best is not None
            _, b, p = best   # the best iterate (the two steps can cycle by a hair)
        j, _ = round_objective(x, b, np.where(sel, p, 0.0), S, inputs, radio, w_e, np.zeros(K), V, risk)
        # (3) this round's costs at the plan: the "previous round's information" of the next step
        next_cost, _ = self.module_costs(x, b, p, inputs, S, risk, w_e)
        s_planned = radio.success(inputs.distance_m, np.where(sel, p, p_max), np.where(sel, b, B / n_max),
                                  inputs.channel_gain, x.astype(float) @ S)   # at the planned power and bandwidth
        return Allocation(
            selected=sel, bandwidth_hz=np.where(sel, b, 0.0), power_w=np.where(sel, p, 0.0), objective=j,
            converged=stop in ("converged", "fixed") and inner_ok, iterations=len(trace),
            message=f"{_STOP[stop]} after {len(trace)} power-bandwidth iterations",
            directives=Directives(modules=ModuleDirective(module)),
            extra={"stop": stop, "num_modules": M, "multiplier": np.asarray(lam, float).copy(),
                   "x_relaxed": np.asarray(x_rel, float).copy(), "next_cost": next_cost,
                   "budget_j": budget.copy(), "kept": None if kept is None else np.asarray(kept).copy(),
                   "objective_trace": trace, "planned_success": np.where(sel, s_planned, 0.0),
                   "eligible_devices": int(eligible.any(axis=1).sum()),
                   "module_gap": np.asarray(risk.gap, float).copy(),
                   "dissimilarity": np.broadcast_to(np.asarray(risk.delta, float), (K,)).copy()})

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
        self.multiplier = np.asarray(plan.extra["multiplier"], float).copy()
        self.x_relaxed = np.asarray(plan.extra["x_relaxed"], float).copy()
        self.prev_cost = np.asarray(plan.extra["next_cost"], float).copy()
        if self.options.energy_constraints:
            self.energy_queue = np.maximum(self.energy_queue + energy - self.budget_j, 0.0)
        self.energy_sum_j += energy
        self.participation_sum += plan.selected
        got = x & np.asarray(outcome.delivered, bool)[:, None]
        self.module_samples = self.options.risk_memory * self.module_samples + got.T.astype(float) @ np.asarray(
            self.context.data_sizes, float)
        if self.options.risk == "theorem":   # G_m(t+1) with the deliveries that happened (s = 1 or 0)
            self.module_gap = module_gap_step(plan.extra["module_gap"], got, 1.0, self.context.data_sizes,
                                              plan.extra["dissimilarity"], self._theorem())
        self.rounds_seen += 1
        sel = plan.selected
        avg_energy = self.energy_sum_j / self.rounds_seen
        return {
            "switch_module_counts": x.sum(axis=0).astype(int).tolist(),
            "switch_multiplier_mean": float(np.mean(self.multiplier)),
            "switch_power_mean_w": float(np.mean(plan.power_w[sel])) if sel.any() else None,
            "switch_planned_success_mean": float(np.mean(plan.extra["planned_success"][sel])) if sel.any() else None,
            "switch_energy_queue_mean": float(np.mean(self.energy_queue)),
            "switch_budget_excess_j": float(np.mean(np.maximum(avg_energy - self.budget_j, 0.0))),
            "switch_min_participation_rate": float(np.min(self.participation_sum) / self.rounds_seen),
            "switch_module_gap": None if self.module_gap is None else self.module_gap.tolist(),
            "switch_dissimilarity_mean": float(np.mean(plan.extra["dissimilarity"])),
        }

    # ------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        def cp(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a.copy()
        return {"energy_queue": self.energy_queue.copy(), "multiplier": self.multiplier.copy(),
                "x_relaxed": cp(self.x_relaxed), "prev_cost": cp(self.prev_cost), "kept": cp(self.kept),
                "budget_j": cp(self.budget_j), "energy_sum_j": self.energy_sum_j.copy(),
                "participation_sum": self.participation_sum.copy(), "rounds_seen": self.rounds_seen,
                "module_samples": cp(self.module_samples), "module_gap": cp(self.module_gap)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return

        def arr(key: str, dtype: type = float) -> np.ndarray | None:
            return None if state[key] is None else np.array(state[key], dtype)
        self.energy_queue = np.array(state["energy_queue"], float)
        self.multiplier = np.array(state["multiplier"], float)
        self.x_relaxed, self.prev_cost = arr("x_relaxed"), arr("prev_cost")
        self.kept, self.budget_j = arr("kept", int), arr("budget_j")
        self.energy_sum_j = np.array(state["energy_sum_j"], float)
        self.participation_sum = np.array(state["participation_sum"], float)
        self.rounds_seen = int(state["rounds_seen"])
        self.module_samples = arr("module_samples")
        self.module_gap = None if state.get("module_gap") is None else np.array(state["module_gap"], float)
