"""The two inner steps of the switching planner's power-bandwidth loop (``planner.py``, step 2):
bandwidth for a fixed assignment and power, then power for a fixed assignment and bandwidth.

Split out of ``SwitchingPlanner`` so that the planner file holds the round's orchestration;
the maths is in ``bandwidth_tiers``, ``bandwidth_reliability`` and ``power``/``power_problem``.
Source: papers.md §3.5(b)-(c) [R].
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from airtune.allocation.planner import PlannerContext, RoundInputs
from airtune.allocation.switching.bandwidth_reliability import log_success_coefficients, reliability_bandwidth
from airtune.allocation.switching.bandwidth_tiers import bandwidth_for_switching
from airtune.allocation.switching.objective import RadioModel, RiskModel
from airtune.allocation.switching.power import solve_power
from airtune.allocation.switching.power_problem import PowerProblem

if TYPE_CHECKING:
    from airtune.allocation.switching.planner import SwitchingPlannerOptions

__all__ = ["step_bandwidth", "step_power"]


def step_bandwidth(o: SwitchingPlannerOptions, c: PlannerContext, radio: RadioModel, n_max: int, v: float,
                   x: np.ndarray, S: np.ndarray, b: np.ndarray, p: np.ndarray, inputs: RoundInputs,
                   risk: RiskModel, w_e: np.ndarray, budget_up: np.ndarray | None) -> tuple[np.ndarray, bool]:
    """Bandwidths (K,) for assignment ``x`` at powers ``p``, and whether the solver converged: the
    reliability split of ``bandwidth_reliability`` on slotted links, else the two-tier search of
    ``bandwidth_tiers`` (papers.md §3.5(b))."""
    sel = np.asarray(x.any(axis=1), bool)
    B = float(c.total_bandwidth_hz)
    floor = np.full(len(sel), o.min_bandwidth_fraction * B / n_max)
    if radio.slot:
        assert c.link.upload_slot_s is not None
        s_k = x.astype(float) @ S
        succ = radio.success(inputs.distance_m, p, b, inputs.channel_gain, s_k)
        w_q = v * risk.outage_weight(x, np.where(sel, succ, 0.0))   # bandwidth_reliability docstring
        A, C, delta = log_success_coefficients(inputs.distance_m, np.maximum(p, 1e-30), radio.n0, radio.alpha,
                                                   radio.gain_1m, radio.density, radio.p_int)
        res = reliability_bandwidth(w_q, s_k / c.link.upload_slot_s, A, C, delta, B, min_bandwidth_hz=floor,
                                        participating=sel)
        return res.bandwidth_hz, bool(res.converged)
    tiers = bandwidth_for_switching(x, S, w_e, p, inputs.channel_gain, radio.n0, B, time_budget_s=budget_up,
                                    min_bandwidth_hz=floor, search=o.bandwidth_search, **radio.solver_kwargs())
    return tiers.bandwidth_hz, bool(tiers.converged)


def step_power(o: SwitchingPlannerOptions, c: PlannerContext, radio: RadioModel, V: float, x: np.ndarray,
               S: np.ndarray, b: np.ndarray, inputs: RoundInputs, w_e: np.ndarray, risk: RiskModel,
               budget_up: np.ndarray | None) -> tuple[np.ndarray, bool]:
    """Powers (K,) for assignment ``x`` at bandwidths ``b``, and whether the solver converged: each
    participant's subproblem (``power_problem``, papers.md §3.5(c)) solved for the participants only;
    idle devices and devices with nothing to trade get their maximum power."""
    sel = np.asarray(x.any(axis=1), bool)
    p_max = np.asarray(c.max_power_w, float) * np.ones(len(sel))
    if not sel.any():
        return p_max, True
    s_k = x.astype(float) @ S
    succ = radio.success(inputs.distance_m, p_max, b, inputs.channel_gain, s_k)
    w_q = risk.outage_weight(x, succ) if radio.ppp else np.zeros(len(sel))  # else success is power-free
    theta = c.link.sinr_threshold_for(b, s_k) if radio.slot else radio.theta
    on = np.flatnonzero(sel)   # only the participants' subproblems (each device's is its own)

    def part(a: Any) -> np.ndarray:
        return np.broadcast_to(np.asarray(a, float), sel.shape)[on]

    prob = PowerProblem(
        payload_bits=s_k[on], bandwidth_hz=b[on], distance_m=part(inputs.distance_m), energy_weight=part(w_e),
        v=V, max_power_w=p_max[on], noise_psd_w_per_hz=radio.n0, sinr_threshold=part(theta),
        path_loss_exponent=radio.alpha, path_gain_at_1m=radio.gain_1m,
        interferer_density_per_m2=radio.density, interferer_power_w=radio.p_int,
        min_power_w=o.min_power_fraction * p_max[on], risk_weight=w_q[on], rate_model=radio.rate_model,
        channel_gain=part(inputs.channel_gain), interference_w=part(radio.interference_w),
        time_budget_s=None if radio.slot or budget_up is None else part(budget_up))
    sol = solve_power(prob, grid_points=o.power_grid_points)
    power = p_max.copy()
    power[on] = sol.power_w
    flat = (w_e <= 0) & (V * w_q <= 0)  # nothing to trade: transmit at full power
    return np.where(sel & ~flat, power, p_max), bool(sol.converged)
