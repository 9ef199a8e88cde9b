r"""The models the switching planner (``switching/planner.py``) optimises over: module payloads,
the link as its solvers see it (:class:`RadioModel`), the risk-gap bound in use
(:class:`RiskModel`), and the per-round objective :math:`J` (:func:`round_objective`).
papers.md §3.3 and §3.5 [R]; formulas in ``switching/planner.py``'s module docstring.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike

from airtune.allocation.planner import PlannerContext, RoundInputs
from airtune.allocation.switching.risk import RiskCoefficients, risk_gap_bound, risk_gap_marginal
from airtune.allocation.switching.risk_ensemble import (
    ensemble_outage_weight,
    ensemble_risk_gap,
    ensemble_risk_marginal,
)
from airtune.allocation.switching.risk_theorem import (
    TheoremCoefficients,
    theorem_outage_weight,
    theorem_risk_gap,
    theorem_risk_marginal,
)

__all__ = ["RadioModel", "RiskModel", "module_payload_bits", "outage_weight", "round_objective"]


def module_payload_bits(ranks: ArrayLike, lora_dims: list[tuple[int, int]], head_bits: float = 0.0,
                        bits_per_value: int = 32) -> np.ndarray:
    r"""Upload size of each module: :math:`S_m = q\,r_m\sum_\ell(d^{\rm in}_\ell+d^{\rm out}_\ell) + S_{\rm head}`.

    papers.md §3.3 step 3 [R]; ``lora_dims`` from ``PlannerContext.lora_dims``.
    """
    per_rank = bits_per_value * sum(int(i) + int(o) for i, o in lora_dims)
    return per_rank * np.asarray(ranks, dtype=float) + float(head_bits)


def outage_weight(x: ArrayLike, success_prob: ArrayLike, data_sizes: ArrayLike, ranks: ArrayLike,
                  coef: RiskCoefficients) -> np.ndarray:
    r""":math:`w_k=\partial\mathcal G/\partial q_k\ge0` of the [R] bound (:mod:`airtune.allocation.switching.risk`), shape (K,).

    .. math::
        w_k = \frac1K\sum_m x_{k,m}\,\frac{n_m}{2}\,c_{\rm gen}\sqrt{\kappa r_m}\,
              (D_0+N_m)^{-3/2}D_k,\qquad N_m=\sum_jx_{j,m}(1-q_j)D_j

    The power subproblem's :math:`G_k(q)=w_kq` (papers.md §3.5(c) [R]).
    """
    x = np.asarray(x, dtype=float)
    eff = np.asarray(success_prob, float) * np.asarray(data_sizes, float)
    total = coef.prior_samples + x.T @ eff  # (M,)
    gen_scale = coef.generalisation * np.sqrt(coef.complexity_per_rank * np.asarray(ranks, float))
    slope = 0.5 * x.sum(axis=0) * gen_scale * total ** (-1.5)  # (M,)
    return cast(np.ndarray, (x @ slope) * np.asarray(data_sizes, float) / max(x.shape[0], 1))


class RadioModel:
    """The run's link as the planner's models use it (``wireless/link.py``): the charged rate,
    the success probability of the delivery event, the solvers' rate model."""

    def __init__(self, ctx: PlannerContext) -> None:
        link = ctx.link
        self.link = link
        self.n0 = float(link.noise_psd_w_per_hz)
        self.ppp = link.mode == "fixed_rate_outage"     # success depends on power and bandwidth
        self.theta = float(link.sinr_threshold)
        self.alpha = float(link.path_loss_exponent)
        self.gain_1m = float(link.path_gain_at_1m)
        self.density = float(link.interferer_density_per_m2)
        self.p_int = float(link.interferer_power_w)
        self.rate_model = link.rate_model
        self.interference_w = float(link.rate_interference_w)

    @property
    def slot(self) -> bool:
        """Fixed-slot link: the payload sets the SINR threshold (paper 3's module-dependent reliability)."""
        return self.link.payload_sets_rate

    def success(self, distance_m: ArrayLike, power_w: ArrayLike, bandwidth_hz: ArrayLike,
                channel_gain: ArrayLike, payload_bits: ArrayLike | None = None) -> np.ndarray:
        return self.link.success_probability(distance_m, bandwidth_hz, np.maximum(power_w, 1e-30), channel_gain,
                                             payload_bits)

    def rate(self, bandwidth_hz: ArrayLike, power_w: ArrayLike, channel_gain: ArrayLike,
             payload_bits: ArrayLike | None = None) -> np.ndarray:
        return self.link.uplink_rate_bps(bandwidth_hz, power_w, channel_gain, payload_bits)

    def module_success(self, distance_m: ArrayLike, power_w: ArrayLike, bandwidth_hz: ArrayLike,
                       channel_gain: ArrayLike, payload_bits: ArrayLike) -> np.ndarray:
        """Success probability (K, M) of each device sending each module's payload at (b_k, p_k)."""
        return np.stack([self.success(distance_m, power_w, bandwidth_hz, channel_gain, np.full(np.shape(distance_m), s))
                         for s in np.asarray(payload_bits, float)], axis=1)

    def module_energy_j(self, compute_energy_j: ArrayLike, power_w: ArrayLike, bandwidth_hz: ArrayLike,
                        channel_gain: ArrayLike, payload_bits: ArrayLike) -> np.ndarray:
        """Energy (K, M) of training and sending each module: compute + p S_m / R (= p T with a slot)."""
        out = []
        for s in np.asarray(payload_bits, float):
            r = self.rate(bandwidth_hz, power_w, channel_gain, np.full(np.shape(compute_energy_j), s))
            tx = np.divide(np.asarray(power_w, float) * s, r, out=np.full(r.shape, np.inf), where=r > 0)
            out.append(np.asarray(compute_energy_j, float) + tx)
        return np.stack(out, axis=1)

    def solver_kwargs(self) -> dict[str, Any]:
        """Rate-model arguments of the bandwidth and deadline solvers (``rate_model.py``)."""
        return {"rate_model": self.rate_model, "sinr_threshold": self.theta, "interference_w": self.interference_w}


class RiskModel:
    r"""The bound :math:`\mathcal G` in use (``risk``): value, (K, M) marginals, (K,) outage weights.

    ``theorem``: :mod:`~airtune.allocation.switching.risk_theorem` (Theorem-1 shape, needs the module
    gaps :math:`G_m(t)` and the dissimilarities :math:`\delta_k`); ``ensemble``:
    :mod:`~airtune.allocation.switching.risk_ensemble` (ours); ``device``:
    :mod:`~airtune.allocation.switching.risk` (ours)."""

    def __init__(self, kind: str, coef: RiskCoefficients, data_sizes: ArrayLike, ranks: ArrayLike,
                 module_samples: ArrayLike, module_gap: ArrayLike | None = None,
                 dissimilarity: ArrayLike | None = None, theorem: TheoremCoefficients | None = None) -> None:
        self.kind, self.coef, self.d, self.r, self.p = kind, coef, data_sizes, ranks, module_samples
        self.gap = np.zeros(len(np.atleast_1d(ranks))) if module_gap is None else np.asarray(module_gap, float)
        self.delta = 0.0 if dissimilarity is None else np.asarray(dissimilarity, float)
        self.thm = theorem if theorem is not None else TheoremCoefficients()

    def value(self, x: ArrayLike, succ: ArrayLike) -> float:
        if self.kind == "theorem":
            return theorem_risk_gap(x, succ, self.d, self.r, self.gap, self.delta, self.thm)
        if self.kind == "ensemble":
            return ensemble_risk_gap(x, succ, self.d, self.r, self.p, self.coef)
        return risk_gap_bound(x, succ, self.d, self.r, 0.0, self.coef)

    def module_marginal(self, x: ArrayLike, succ_km: np.ndarray) -> np.ndarray:
        """(K, M) change of the bound when device k moves from idle to module m, with its success
        probability :math:`s_{k,m}` of that module (every bound is separable over modules, so
        column m only needs module m's successes)."""
        return np.stack([self.marginal(x, succ_km[:, m])[:, m] for m in range(succ_km.shape[1])], axis=1)

    def marginal(self, x: ArrayLike, succ: ArrayLike) -> np.ndarray:
        if self.kind == "theorem":
            return theorem_risk_marginal(x, succ, self.d, self.gap, self.delta, self.thm)
        if self.kind == "ensemble":
            return ensemble_risk_marginal(x, succ, self.d, self.r, self.p, self.coef)
        return risk_gap_marginal(x, succ, self.d, self.r, 0.0, self.coef)

    def outage_weight(self, x: ArrayLike, succ: ArrayLike) -> np.ndarray:
        if self.kind == "theorem":
            return theorem_outage_weight(x, succ, self.d, self.gap, self.delta, self.thm)
        if self.kind == "ensemble":
            return ensemble_outage_weight(x, succ, self.d, self.r, self.p, self.coef)
        return outage_weight(x, succ, self.d, self.r, self.coef)


def round_objective(x: ArrayLike, bandwidth_hz: ArrayLike, power_w: np.ndarray, payload_bits: ArrayLike,
                    inputs: RoundInputs, radio: RadioModel, energy_weight: np.ndarray,
                    participation_backlog: np.ndarray, v: float, risk: RiskModel) -> tuple[float, np.ndarray]:
    """:math:`J(x,b,p)` of the module docstring and the energy :math:`E_k` (0 where idle), shape (K,)."""
    x = np.asarray(x, bool)
    sel = x.any(axis=1)
    s_k = x.astype(float) @ np.asarray(payload_bits, float)
    succ = np.where(sel, radio.success(inputs.distance_m, power_w, bandwidth_hz, inputs.channel_gain, s_k), 0.0)
    g = risk.value(x, succ)
    rate = radio.rate(bandwidth_hz, power_w, inputs.channel_gain, s_k)
    tx = np.divide(power_w * s_k, rate, out=np.full(sel.shape, np.inf), where=rate > 0)
    energy = np.where(sel, inputs.compute_energy_j + tx, 0.0)
    j = v * g + float(np.sum((energy_weight * energy)[sel])) - float(np.sum(np.asarray(participation_backlog)[sel]))
    return j, energy
