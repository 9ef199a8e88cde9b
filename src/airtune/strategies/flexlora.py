r"""FlexLoRA [bai2024flexlora]: full-size aggregation of products, SVD redistribution (papers.md §4.3 [K]).

Server state
    ``extra["delta"]``: the global effective update ``ΔW = Σ_k p_k s_k B_k A_k`` of every adapted
    layer, ``(d, n)`` (None before the first aggregation), and ``extra["svd"]`` its top-``r_max``
    singular triplets (``U: (d, r_max)``, ``S: (r_max,)``, ``Vh: (r_max, n)``) so that
    redistribution does not repeat the SVD; ``extra["stack_rank"]``: ``Σ r_k`` of the last
    aggregation (a bound on the rank of ``ΔW``). ``tensors``: what a rank-``r_max`` device
    receives (its raw factors, scale ``alpha / r_max``; the shared model's initial adapter before
    the first aggregation) and the head.

Round
    Device ``k`` receives the rank-``r_k`` truncated SVD of ``ΔW`` with the singular values in
    ``B`` and its own scale divided out, ``B_k = U_{:, :r_k} diag(S_{:r_k}) / s_k``,
    ``A_k = Vh_{:r_k}`` (:func:`~airtune.lora.ops_hetero.flexlora_redistribute`; the SVD is of
    the ``(d, n)`` delta, not its transpose, :func:`~airtune.lora.ops_hetero.flexlora_svd`);
    before the first aggregation it receives the first ``r_k`` rows of the initial ``A`` and
    ``B = 0``. The server forms the full-size data-weighted sum of the delivered devices'
    effective products (:func:`~airtune.lora.ops_hetero.flexlora_aggregate`; exact for mixed
    ranks, so no cross-covariance term) and FedAvg-s the head. Lost updates are ignored.

Evaluation uses the exact ``ΔW`` (added to the pre-trained weights, with a zero adapter), not a
truncation; the checkpoint adapter is ``ΔW`` re-factored at rank ``min(Σ r_k, min(d, n))`` (exact).

Diagnostics: ``global_rank`` (largest numerical rank of ``ΔW`` over layers), ``energy_kept_min_rank``
and ``energy_kept_max_rank`` (share of ``||ΔW||_F^2`` that the smallest / largest device rank
keeps, mean over layers).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from airtune.allocation.result import Allocation
from airtune.lora.adapters import lora_pairs, rank_adapter_name
from airtune.lora.ops import truncate_rank
from airtune.lora.ops_hetero import flexlora_aggregate, flexlora_redistribute, flexlora_svd
from airtune.registry import STRATEGIES
from airtune.strategies.base import ServerState, Strategy, delivered_updates
from airtune.strategies.common import (
    assemble,
    average_heads,
    data_weights,
    delta_export,
    factors,
    head_state,
    rank_of,
    rank_task,
    serial_linalg,
    zeros_like_pairs,
)
from airtune.training.engine import ClientTask, ClientUpdate


class FlexLoRAOptions(BaseModel):
    """Options of ``flexlora``."""

    model_config = ConfigDict(extra="forbid")

    weighting: Literal["data"] = Field("data", description="aggregation weights p_k: local data sizes (the paper's)")
    rank_tol: float = Field(1e-6, gt=0, lt=1,
                            description="singular values below rank_tol * largest count as zero in global_rank")


@STRATEGIES.register("flexlora")
class FlexLoRA(Strategy):
    """Heterogeneous-rank LoRA: exact full-size aggregation, rank-r_k SVD truncation per device."""

    name = "flexlora"
    bits_known_before_training = True
    supports_server_optimizer = False   # the aggregate is an SVD re-factorisation, not a parameter step
    supports_heterogeneous_ranks = True
    Options = FlexLoRAOptions

    def init_state(self, tensors: dict[str, torch.Tensor]) -> ServerState:
        if rank_of(tensors) != self.context.r_max:
            raise ValueError(f"initial state has rank {rank_of(tensors)}, expected r_max = {self.context.r_max}")
        return ServerState({k: v.clone() for k, v in tensors.items()},
                           {"delta": None, "svd": None, "stack_rank": 0})

    def _device_state(self, server: ServerState, rank: int) -> dict[str, torch.Tensor]:
        pairs = lora_pairs(server.tensors)
        t, svd = server.tensors, server.extra["svd"]
        if svd is None:  # before the first aggregation: initial A, B = 0
            layers = {p: truncate_rank(t[a], t[b], rank) for p, (a, b) in pairs.items()}
        else:
            delta = server.extra["delta"]
            layers = {p: flexlora_redistribute(delta[p], rank, self.context.scale(rank), svd=svd[p]) for p in pairs}
        return assemble(pairs, layers, head_state(t))

    def configure_round(self, rnd: int, server: ServerState, selected: list[int],
                        seeds: dict[int, int], steps: int, plan: Allocation | None = None) -> list[ClientTask]:
        ranks = self.context.device_ranks
        return [rank_task(k, int(ranks[k]), self._device_state(server, int(ranks[k])), steps, seeds[k])
                for k in selected]

    def aggregate(self, rnd: int, server: ServerState, updates: list[ClientUpdate],
                  delivered: set[int]) -> tuple[ServerState, dict[str, Any]]:
        ok = delivered_updates(updates, delivered)
        if not ok:
            return server, {"aggregated": 0, "global_rank": None}
        ctx = self.context
        states, sizes = [u.state for u in ok], data_weights(ok)
        ranks = [rank_of(s) for s in states]
        scales = [ctx.scale(r) for r in ranks]
        r_max, r_min = ctx.r_max, int(ctx.device_ranks.min())
        pairs = lora_pairs(states[0])
        deltas, svds, glob_rank, kept_min, kept_max = {}, {}, 0, [], []
        for p, (a_key, b_key) in pairs.items():
            As, Bs = factors(states, a_key, b_key)
            delta = flexlora_aggregate(As, Bs, scales, sizes)           # (d, n)
            with serial_linalg():
                U, S, Vh = flexlora_svd(delta)
            deltas[p], svds[p] = delta, (U[:, :r_max].clone(), S[:r_max].clone(), Vh[:r_max].clone())
            energy = float(S.pow(2).sum())
            if energy > 0:
                glob_rank = max(glob_rank, int((S > self.options.rank_tol * S[0]).sum()))
                kept_min.append(float(S[:r_min].pow(2).sum()) / energy)
                kept_max.append(float(S[:r_max].pow(2).sum()) / energy)
        head = average_heads(states, sizes)
        extra = {"delta": deltas, "svd": svds, "stack_rank": int(sum(ranks))}
        top = {p: flexlora_redistribute(deltas[p], r_max, ctx.scale(r_max), svd=svds[p]) for p in pairs}
        new = ServerState(assemble(pairs, top, head), extra)
        def mean(xs):
            return (sum(xs) / len(xs) if xs else None)
        return new, {"aggregated": len(ok), "global_rank": glob_rank,
                     "energy_kept_min_rank": mean(kept_min), "energy_kept_max_rank": mean(kept_max)}

    # -- hooks ----------------------------------------------------------------------------------
    def global_task(self, server: ServerState) -> ClientTask:
        r = self.context.r_max
        if server.extra["delta"] is None:
            return ClientTask(-1, server.tensors, 0, 0, adapter=rank_adapter_name(r), rank=r)
        pairs = lora_pairs(server.tensors)
        state = assemble(pairs, zeros_like_pairs(pairs, server.tensors, r), head_state(server.tensors))
        return ClientTask(-1, state, 0, 0, adapter=rank_adapter_name(r), rank=r, base_delta=server.extra["delta"])

    def export_adapter(self, server: ServerState) -> tuple[int, dict[str, torch.Tensor]] | None:
        if server.extra["delta"] is None:
            return None
        return delta_export(lora_pairs(server.tensors), server.extra["delta"], head_state(server.tensors),
                            self.context.lora.alpha, max_rank=server.extra["stack_rank"])
