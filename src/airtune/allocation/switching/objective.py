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

    def success(self, distance_m: ArrayLike, power_w: ArrayLike, bandwidth_hz: ArrayLike,
                channel_gain: ArrayLike) -> np.ndarray:
        return self.link.success_probability(distance_m, bandwidth_hz, np.maximum(power_w, 1e-30), channel_gain)

    def rate(self, bandwidth_hz: ArrayLike, power_w: ArrayLike, channel_gain: ArrayLike) -> np.ndarray:
        return self.link.uplink_rate_bps(bandwidth_hz, power_w, channel_gain)

    def solver_kwargs(self) -> dict[str, Any]:
        """Rate-model arguments of the bandwidth and deadline solvers (``rate_model.py``)."""
        return {"rate_model": self.rate_model, "sinr_threshold": self.theta, "interference_w": self.interference_w}


class RiskModel:
    r"""The bound :math:`\mathcal G` in use: value, (K, M) marginals, (K,) outage weights."""

    def __init__(self, kind: str, coef: RiskCoefficients, data_sizes: ArrayLike, ranks: ArrayLike,
                 module_samples: ArrayLike) -> None:
        self.kind, self.coef, self.d, self.r, self.p = kind, coef, data_sizes, ranks, module_samples

    def value(self, x: ArrayLike, succ: ArrayLike) -> float:
        if self.kind == "ensemble":
            return ensemble_risk_gap(x, succ, self.d, self.r, self.p, self.coef)
        return risk_gap_bound(x, succ, self.d, self.r, 0.0, self.coef)

    def marginal(self, x: ArrayLike, succ: ArrayLike) -> np.ndarray:
        if self.kind == "ensemble":
            return ensemble_risk_marginal(x, succ, self.d, self.r, self.p, self.coef)
        return risk_gap_marginal(x, succ, self.d, self.r, 0.0, self.coef)

    def outage_weight(self, x: ArrayLike, succ: ArrayLike) -> np.ndarray:
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
    succ = np.where(sel, radio.success(inputs.distance_m, power_w, bandwidth_hz, inputs.channel_gain), 0.0)
    g = risk.value(x, succ)
    rate = radio.rate(bandwidth_hz, power_w, inputs.channel_gain)
    tx = np.divide(power_w * s_k, rate, out=np.full(sel.shape, np.inf), where=rate > 0)
    energy = np.where(sel, inputs.compute_energy_j + tx, 0.0)
    j = v * g + float(np.sum((energy_weight * energy)[sel])) - float(np.sum(participation_backlog[sel]))
    return j, energy
