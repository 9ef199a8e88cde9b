r"""SOFT: sparsified orthogonal fine-tuning [kim2025soft] (papers.md §2.5; details [R] our reconstruction).

Per round:

1. Devices train the shared-rank LoRA from the global factors with an orthogonality regulariser
   summed over adapted matrices (``ClientTask.regularizer``), option ``orth_form``:
   ``normalised`` (default, our choice) penalises the squared cosines between the rows of
   :math:`A` and between the columns of :math:`B`
   (:func:`~airtune.lora.ops_soft.normalised_orthogonality_penalty`: scale-invariant, so it acts
   while :math:`B` is small); ``gram`` is papers.md §2.5's
   :math:`\|AA^\top - I\|_F^2 + \|\mathrm{offdiag}(B^\top B)\|_F^2`, quartic in :math:`B`'s
   scale (measured: score--singular-value gap 0.03 vs 0.46 after 6 rounds, docs/results/soft.md).
   Option ``orthonormal_init`` starts the global :math:`A` with orthonormal rows (QR); off by
   default as in papers.md, since the measured gap was the same either way (0.029 vs 0.035).
2. Each device ranks its rank-1 components by :math:`s_i = \|b_i\|\|a_i\|` (no product
   :math:`BA`, no SVD) and sends the top :math:`m_k` per matrix with an index mask
   (:func:`airtune.lora.sparsify.soft_select`); :math:`m_k = \lceil \kappa_k r\rceil` from the
   plan's ``keep_ratio`` (TSFA, ``allocation/tsfa/planner.py``) or the ``keep_ratio`` option.
   Optional error feedback keeps each device's unsent update as a residual in
   ``server.extra["residual"]`` (device state stored with the server so checkpoints keep it).
3. The server aggregates :math:`A` and :math:`B` separately per rank component over the senders
   (:func:`airtune.lora.sparsify.partial_rank_aggregate`, rule ``aggregation``).

Per-device error curves for TSFA (papers.md §2.6: each client's own :math:`\varepsilon_k(m)`):
the server keeps, in ``server.extra["error_curves"]`` (so checkpoints keep it), the truncation
error curve :math:`\varepsilon_k(m) = \mathrm{scale}^2\sum_\ell\sum_{j>m}s_{k,\ell,(j)}^2` of the
factors device :math:`k` last delivered. :meth:`Soft.planner_hints` sends row :math:`k` for
device :math:`k` (relative curve :math:`\varepsilon_k(m)/\varepsilon_k(0)` plus the energy
:math:`\varepsilon_k(0)`). A device never delivered yet gets the relative curve of the global
factors' scores and the mean energy of the devices seen (our choice: the best guess available
before the round; a flat spectrum :math:`1 - m/r` while every score is zero).

Logged per round (the terms of the convergence bound, papers.md §2.7): ``soft_rank``,
``soft_sparsification_error`` (:math:`\sum_k p_k^2\varepsilon_k`, :math:`\varepsilon_k` from the
scores, scale² included), ``soft_relative_error``, ``cross_cov_fro`` (covariance of the factors
as aggregated), ``orth_err_a`` / ``orth_err_b`` (mean over delivered devices of
:math:`\sqrt{\sum_\ell e^2}`), ``score_sv_rel_err`` (the score--singular-value gap
:math:`\|s_{\rm sorted} - \sigma(BA)\|/\|\sigma(BA)\|` of the delivered factors, singular values
by QR of the factors, mean over devices) and ``soft_mean_kept``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from airtune.allocation.exchange import Hints, SoftPayloadHint
from airtune.allocation.result import Allocation
from airtune.lora.adapters import lora_pairs, trainable_params
from airtune.lora.ops_soft import (
    normalised_orthogonality_penalty,
    orthogonality_error,
    orthogonality_penalty,
    rank_importance,
    truncation_error_curve,
)
from airtune.lora.soft_payload import kept_from_ratio, soft_payload_bits, soft_payload_table
from airtune.lora.sparsify import partial_rank_aggregate, singular_values_from_factors, soft_select
from airtune.registry import REGULARIZERS, STRATEGIES
from airtune.strategies.base import ServerState, Strategy, tensor_bits
from airtune.strategies.common import average_heads, data_weights, head_state
from airtune.strategies.fedit import cross_cov_norm
from airtune.training.engine import ClientTask, ClientUpdate
from airtune.training.regularizers import RegularizerSpec


class SoftOptions(BaseModel):
    """Options of ``soft``."""

    model_config = ConfigDict(extra="forbid")

    orth_weight: float = Field(1e-2, ge=0, description="lambda_orth of the orthogonality regulariser; 0: none")
    orth_form: Literal["normalised", "gram"] = Field(
        "normalised", description="orthogonality penalty: squared cosines of rows of A / columns of B "
        "(scale-invariant), or papers.md's ||AA^T - I||^2 + ||offdiag(B^T B)||^2")
    orthonormal_init: bool = Field(False, description="start the global A with orthonormal rows (QR; not in papers.md)")
    keep_ratio: float = Field(1.0, gt=0, le=1,
                              description="kept share of the rank components when the plan sets none")
    index_coding: Literal["mask", "combinatorial", "none"] = Field(
        "mask", description="index bits per matrix: r-bit mask, ceil(log2 C(r,m)), or none")
    aggregation: Literal["keep_global", "renormalise"] = Field(
        "keep_global", description="unsent components: keep the global value (zero update) or average senders only")
    error_feedback: bool = Field(False, description="keep the unsent update per device and add it next round")
    bits_per_value: int = Field(32, ge=1, le=64, description="bits per transmitted value")


@REGULARIZERS.register("soft_orthogonality")
@dataclass(frozen=True)
class OrthPenalty:
    """``weight * sum_l (||A A^T - I||^2 + ||offdiag(B^T B)||^2)`` of the active adapter
    (registered regulariser ``soft_orthogonality``, ``training/regularizers.py``)."""

    weight: float

    def __call__(self, model: nn.Module) -> torch.Tensor:
        params = trainable_params(model)
        return self.weight * sum(orthogonality_penalty(params[a], params[b]) for a, b in lora_pairs(params).values())


@REGULARIZERS.register("soft_orthogonality_normalised")
@dataclass(frozen=True)
class NormalisedOrthPenalty:
    """``weight * sum_l (sum_{i!=j} cos^2(a_i, a_j) + cos^2(b_i, b_j))`` of the active adapter
    (registered regulariser ``soft_orthogonality_normalised``; scale-invariant form)."""

    weight: float

    def __call__(self, model: nn.Module) -> torch.Tensor:
        params = trainable_params(model)
        return self.weight * sum(normalised_orthogonality_penalty(params[a], params[b])
                                 for a, b in lora_pairs(params).values())


PENALTY_NAMES = {"normalised": "soft_orthogonality_normalised", "gram": "soft_orthogonality"}


def keep_counts(plan: Allocation | None, selected: list[int], rank: int, default_ratio: float) -> dict[int, int]:
    r"""Kept components :math:`m_k = \lceil \kappa_k r \rceil \in [1, r]` of each scheduled device.

    :math:`\kappa_k` is ``plan.directives.sparsity.keep_ratio[k]`` when the plan carries one, else
    ``default_ratio``.
    """
    sparsity = None if plan is None else plan.directives.sparsity
    ratios = None if sparsity is None else sparsity.keep_ratio
    out = {}
    for k in selected:
        kappa = float(default_ratio if ratios is None else ratios[k])
        out[k] = int(np.clip(kept_from_ratio(1.0 - min(max(kappa, 0.0), 1.0), rank), 1, rank))
    return out


def orthonormal_rows(A: torch.Tensor) -> torch.Tensor:
    """The (r, n) matrix with orthonormal rows spanning the rows of ``A`` (QR, signs fixed)."""
    Q, R = torch.linalg.qr(A.T.to(torch.float64))
    sign = torch.sign(torch.diagonal(R))
    sign[sign == 0] = 1
    return (Q * sign).T.to(A.dtype).contiguous()


@STRATEGIES.register("soft")
class Soft(Strategy):
    accepts_directives = frozenset({"sparsity"})
    provides_hints = frozenset({"soft_payload"})
    """Rank-sparsified upload by SVD-free importance, near-orthogonal factors, partial-rank aggregation."""

    name = "soft"
    Options = SoftOptions

    # -- state ----------------------------------------------------------------------------------
    def init_state(self, tensors: dict[str, torch.Tensor]) -> ServerState:
        t = {k: v.clone() for k, v in tensors.items()}
        if self.options.orthonormal_init:
            for a_key, _ in lora_pairs(t).values():
                t[a_key] = orthonormal_rows(t[a_key])
        return ServerState(t, {"residual": {}} if self.options.error_feedback else {})

    @property
    def rank(self) -> int:
        return int(self.context.lora.rank)

    def _scale(self) -> float:
        return self.context.scale(self.rank)

    # -- contract -------------------------------------------------------------------------------
    def configure_round(self, rnd: int, server: ServerState, selected: list[int],
                        seeds: dict[int, int], steps: int, plan: Allocation | None = None) -> list[ClientTask]:
        m = keep_counts(plan, selected, self.rank, self.options.keep_ratio)
        penalty = (RegularizerSpec.of(PENALTY_NAMES[self.options.orth_form], weight=self.options.orth_weight)
                   if self.options.orth_weight > 0 else None)
        return [ClientTask(device=k, state=server.tensors, steps=steps, seed=seeds[k], regularizer=penalty,
                           memo={"soft_keep": m[k]}) for k in selected]

    def aggregate(self, rnd: int, server: ServerState, updates: list[ClientUpdate],
                  delivered: set[int]) -> tuple[ServerState, dict[str, Any]]:
        o, g = self.options, server.tensors
        pairs = lora_pairs(g)
        ef = o.error_feedback
        residual = dict(server.extra.get("residual", {})) if ef else {}
        scale2 = self._scale() ** 2
        sent: dict[int, dict[str, tuple]] = {}
        curves = dict(server.extra.get("error_curves", {}))   # device -> eps_k(m), m = 0..r (scale^2 incl.)
        errors, rel_errors, orth_a, orth_b, sv_gaps = {}, [], [], [], []
        for u in sorted(updates, key=lambda u: u.device):
            m = int(u.memo["soft_keep"])
            res = residual.get(u.device, {})
            new_res, layers, eps, energy = {}, {}, 0.0, 0.0
            dev_curve = torch.zeros(self.rank + 1, dtype=torch.float64)
            ea2 = eb2 = 0.0
            for p, (a_key, b_key) in pairs.items():
                A_c, B_c, mask, scores, rA, rB = soft_select(g[a_key], g[b_key], u.state[a_key], u.state[b_key], m,
                                                            res.get(a_key), res.get(b_key))
                layers[p] = (A_c, B_c, mask)
                curve = truncation_error_curve(scores.detach().double())
                dev_curve = dev_curve + curve
                eps += float(scores[~mask].pow(2).sum())
                energy += float(curve[0])
                if ef:
                    new_res[a_key], new_res[b_key] = rA, rB
                if u.device in delivered:
                    e_a, e_b = orthogonality_error(A_c, B_c)
                    ea2, eb2 = ea2 + float(e_a) ** 2, eb2 + float(e_b) ** 2
                    sv = singular_values_from_factors(A_c, B_c)
                    if float(sv.norm()) > 0:
                        s_sorted = torch.sort(scores.to(sv.dtype), descending=True).values
                        sv_gaps.append(float((s_sorted - sv).norm() / sv.norm()))
            if ef:
                residual[u.device] = new_res
            if u.device in delivered:
                curves[u.device] = scale2 * dev_curve
                sent[u.device] = layers
                errors[u.device] = scale2 * eps
                rel_errors.append(eps / energy if energy > 0 else 0.0)
                orth_a.append(math.sqrt(ea2))
                orth_b.append(math.sqrt(eb2))
        extra = {**server.extra, "error_curves": curves, **({"residual": residual} if ef else {})}
        ok = sorted((u for u in updates if u.device in delivered), key=lambda u: u.device)
        base_report = {"soft_rank": self.rank, "soft_mean_kept": float(np.mean([u.memo["soft_keep"] for u in updates]))
                       if updates else None}
        if not ok:
            return ServerState(g, extra), {**base_report, "aggregated": 0, "cross_cov_fro": None,
                                           "soft_sparsification_error": None}
        weights = data_weights(ok)
        p = np.asarray(weights) / np.sum(weights)
        new = dict(g)
        effective = [dict(u.state) for u in ok]   # factors as aggregated (unsent -> global), for the covariance
        for pfx, (a_key, b_key) in pairs.items():
            As = [sent[u.device][pfx][0] for u in ok]
            Bs = [sent[u.device][pfx][1] for u in ok]
            masks = [sent[u.device][pfx][2] for u in ok]
            new[a_key], new[b_key] = partial_rank_aggregate(g[a_key], g[b_key], As, Bs, masks, weights, o.aggregation)
            for st, A, B, mk in zip(effective, As, Bs, masks):
                st[a_key] = torch.where(mk[:, None], A, g[a_key])
                st[b_key] = torch.where(mk[None, :], B, g[b_key])
        new.update(average_heads([u.state for u in ok], weights))
        report = {
            **base_report, "aggregated": len(ok),
            "cross_cov_fro": cross_cov_norm(effective, weights),
            "soft_sparsification_error": float(sum(pk**2 * errors[u.device] for pk, u in zip(p, ok))),
            "soft_relative_error": float(np.mean(rel_errors)),
            "orth_err_a": float(np.mean(orth_a)), "orth_err_b": float(np.mean(orth_b)),
            "score_sv_rel_err": float(np.mean(sv_gaps)) if sv_gaps else None,
        }
        return ServerState(new, extra), report

    # -- payload --------------------------------------------------------------------------------
    def _dims(self, state: dict[str, torch.Tensor]) -> list[tuple[int, int]]:
        return [(int(state[a].shape[1]), int(state[b].shape[0])) for a, b in lora_pairs(state).values()]

    def _bits(self, state: dict[str, torch.Tensor], m: int) -> int:
        o = self.options
        factor_bits = soft_payload_bits(m, self._dims(state), self.rank, o.bits_per_value, o.index_coding)
        return int(factor_bits) + tensor_bits(head_state(state))

    def uplink_bits(self, update: ClientUpdate) -> int:
        """Kept columns of B and rows of A, the index coding (``soft_payload``), and the head."""
        return self._bits(update.state, int(update.memo["soft_keep"]))

    def planned_bits(self, server: ServerState, num_devices: int) -> tuple[np.ndarray, np.ndarray]:
        m = int(kept_from_ratio(1.0 - self.options.keep_ratio, self.rank))
        return (np.full(num_devices, float(self._bits(server.tensors, max(m, 1)))),
                np.full(num_devices, float(tensor_bits(server.tensors))))

    def planner_hints(self, server: ServerState) -> Hints:
        r"""For TSFA: the rank, the payload table S(m), m = 0..r (bits incl. head), and per-device
        truncation-error curves (K, r+1) relative to their energies :math:`\varepsilon_k(0)`, with
        those energies (K,): see the module docstring for the devices never delivered."""
        o, g = self.options, server.tensors
        head = tensor_bits(head_state(g))
        table = soft_payload_table(self.rank, self._dims(g), o.bits_per_value, o.index_coding) + head
        rel, energy = device_error_curves(server, len(self.context.device_ranks), self.rank, self._scale() ** 2)
        return Hints(soft_payload=SoftPayloadHint(rank=self.rank, payload_bits=table.astype(float),
                                                  error_curve=rel, error_energy=energy))


def device_error_curves(server: ServerState, num_devices: int, rank: int,
                        scale2: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    r"""Relative curves :math:`\varepsilon_k(m)/\varepsilon_k(0)` (K, r+1) and energies
    :math:`\varepsilon_k(0)` (K,) from ``server.extra["error_curves"]``, the global factors'
    relative curve (and the mean energy of the devices seen) for the others; ``(None, None)``
    while no device has delivered and every global score is zero."""
    g = server.tensors
    glob = sum((truncation_error_curve(rank_importance(g[a], g[b]).double()) for a, b in lora_pairs(g).values()),
               torch.zeros(rank + 1, dtype=torch.float64)).numpy() * scale2
    known = {int(k): np.asarray(v, float) for k, v in server.extra.get("error_curves", {}).items()
             if float(v[0]) > 0}
    if not known and glob[0] <= 0:
        return None, None
    fallback = glob / glob[0] if glob[0] > 0 else 1.0 - np.arange(rank + 1) / rank
    fallback_energy = float(np.mean([c[0] for c in known.values()])) if known else float(glob[0])
    rel = np.tile(fallback, (num_devices, 1))
    energy = np.full(num_devices, fallback_energy)
    for k, c in known.items():
        rel[k], energy[k] = c / c[0], c[0]
    return rel, energy
