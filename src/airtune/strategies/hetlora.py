r"""HetLoRA [cho2024hetlora]: heterogeneous ranks, truncation down, zero-padding up (papers.md §4.2 [K]).

Server state (scale-1 convention of :mod:`airtune.lora.ops_hetero`)
    ``tensors``: the global pair ``A: (r_max, n)``, ``B: (d, r_max)`` per adapted layer with
    the LoRA scale folded into ``B`` (the global effective update is ``B @ A``), and the head.
    ``extra["ranks"]``: current rank of every device (K,), ``extra["tail_ref"]``: each device's
    previous tail norm (K,), NaN when none (both change only with self-pruning).
    ``r_max`` is the largest device rank.

Round
    Device ``k`` of rank ``r_k`` receives the first ``r_k`` components
    (:func:`~airtune.lora.ops_hetero.hetlora_distribute`, ``B`` divided by its own scale
    ``alpha / r_k``) and trains them in the shared model's rank-``r_k`` adapter. Optionally the
    local loss carries the rank self-pruning regulariser
    ``prune_lambda * sum_l ||B_l[:, t:]||_F ||A_l[t:, :]||_F`` with ``t = floor(prune_gamma r_k)``
    (:func:`~airtune.lora.ops_hetero.hetlora_tail_penalty`). The server zero-pads the delivered
    pairs to ``r_max`` and averages them with Frobenius-norm ("sparsity") weights
    ``w_k ∝ ||s_k B_k A_k||_F`` per layer, or data-size weights (``weighting``)
    (:func:`~airtune.lora.ops_hetero.hetlora_aggregate`). The head is FedAvg-ed (data sizes).
    Updates lost on the uplink are ignored.

Self-pruning (``self_prune``, off by default)
    After local training, device ``k`` computes its tail norm
    ``tau_k = sum_l ||B_l[:, t:r_k]||_F ||A_l[t:r_k, :]||_F`` (the quantity the regulariser
    penalises, summed over layers so that all layers keep one rank). Trigger [R, our reading of
    the paper]: if ``tau_k < (1 - prune_rel_tol) * tau_k(previous round)``, the device prunes its
    rank to ``max(floor(prune_gamma r_k), min_rank)`` before uploading (the upload shrinks
    accordingly) and restarts the comparison next round; with no previous value it never prunes.
    This is the device-level form of :func:`~airtune.lora.ops_hetero.hetlora_prune_rank` (one
    decision for the whole adapter). The new rank and tail reference are device-local state,
    updated even when the upload is then lost.

    Pruning preserves the effective update of the kept components. The paper (HetLoRA, Cho et
    al., EMNLP 2024, papers.md §4.2) states truncation on unscaled ``B_k A_k``; with PEFT's scale
    ``alpha / r`` a bare truncation from ``r`` to ``r'`` would multiply the kept components by
    ``r / r'`` (the new rank's scale ``alpha / r'`` applies). Our choice: put the factor
    ``r' / r`` on ``B``, i.e. upload ``A' = A[:r', :]``, ``B' = (r' / r) B[:, :r']``, so that
    ``(alpha / r') B' A' = (alpha / r) B[:, :r'] A[:r', :]`` exactly. Implemented with the
    scale convention used everywhere else: fold the old scale into ``B``, then take the first
    ``r'`` components at the new scale (:func:`~airtune.lora.ops_hetero.hetlora_distribute`).

Diagnostics: ``cross_cov_fro`` (the weighted cross-covariance of the padded factors, papers.md
§2.4, summed in quadrature over layers), ``global_rank`` (``r_max``), ``ranks_delivered``,
``pruned`` (devices that pruned this round).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from airtune.allocation.result import Allocation
from airtune.lora.adapters import lora_pairs, rank_adapter_name, trainable_params
from airtune.lora.ops import cross_covariance, pad_rank
from airtune.lora.ops_hetlora import (
    hetlora_aggregate,
    hetlora_distribute,
    hetlora_prune_rank,
    hetlora_tail_penalty,
    hetlora_weights,
)
from airtune.registry import REGULARIZERS, STRATEGIES
from airtune.strategies.base import ServerState, Strategy, delivered_updates
from airtune.strategies.common import (
    assemble,
    average_heads,
    data_weights,
    factors,
    head_state,
    rank_of,
    rank_task,
)
from airtune.training.engine import ClientTask, ClientUpdate
from airtune.training.regularizers import RegularizerSpec

log = logging.getLogger("airtune")


class HetLoRAOptions(BaseModel):
    """Options of ``hetlora``."""

    model_config = ConfigDict(extra="forbid")

    weighting: Literal["norm", "data"] = Field(
        "norm", description="aggregation weights: norm (||s_k B_k A_k||_F, the paper's) or data (local data sizes)")
    prune_gamma: float = Field(
        0.99, ge=0, lt=1, description="kept fraction gamma: the tail is components floor(gamma r_k)..r_k")
    prune_lambda: float = Field(
        0.0, ge=0, description="weight of the tail-norm regulariser in the local loss; 0: none")
    self_prune: bool = Field(
        False, description="let devices prune their rank to floor(gamma r_k) when their tail norm decreases")
    prune_rel_tol: float = Field(
        0.0, ge=0, lt=1, description="relative decrease of the tail norm required to prune")
    min_rank: int = Field(1, ge=1, description="smallest rank a device prunes to")


@REGULARIZERS.register("hetlora_tail")
@dataclass(frozen=True)
class TailPenalty:
    """``weight * sum_l ||B_l tail||_F ||A_l tail||_F`` of the active adapter (registered
    regulariser ``hetlora_tail``, ``training/regularizers.py``)."""

    gamma: float
    weight: float

    def __call__(self, model: nn.Module) -> torch.Tensor:
        params = trainable_params(model)
        total = sum(hetlora_tail_penalty(params[a], params[b], self.gamma)
                    for a, b in lora_pairs(params).values())
        return self.weight * total


@STRATEGIES.register("hetlora")
class HetLoRA(Strategy):
    """Heterogeneous-rank LoRA: truncation for distribution, zero-padding with norm weights for aggregation."""

    name = "hetlora"
    supports_heterogeneous_ranks = True
    Options = HetLoRAOptions

    # -- state ----------------------------------------------------------------------------------
    def init_state(self, tensors: dict[str, torch.Tensor]) -> ServerState:
        """``tensors``: the shared model's rank-``r_max`` adapter (raw factors, scale alpha / r_max)."""
        ctx = self.context
        if rank_of(tensors) != ctx.r_max:
            raise ValueError(f"initial state has rank {rank_of(tensors)}, expected r_max = {ctx.r_max}")
        s = ctx.scale(ctx.r_max)
        glob = {k: (v * s if ".lora_B." in k else v).clone() for k, v in tensors.items()}  # fold the scale
        K = len(ctx.device_ranks)
        return ServerState(glob, {"ranks": ctx.device_ranks.copy(), "tail_ref": np.full(K, np.nan)})

    def _device_state(self, server: ServerState, rank: int) -> dict[str, torch.Tensor]:
        pairs = lora_pairs(server.tensors)
        layers = {p: hetlora_distribute(server.tensors[a], server.tensors[b], rank, self.context.scale(rank))
                  for p, (a, b) in pairs.items()}
        return assemble(pairs, layers, head_state(server.tensors))

    # -- contract -------------------------------------------------------------------------------
    def configure_round(self, rnd: int, server: ServerState, selected: list[int],
                        seeds: dict[int, int], steps: int, plan: Allocation | None = None) -> list[ClientTask]:
        o = self.options
        penalty = (RegularizerSpec.of("hetlora_tail", gamma=o.prune_gamma, weight=o.prune_lambda)
                   if o.prune_lambda > 0 else None)
        tasks = []
        for k in selected:
            r = int(server.extra["ranks"][k])
            ref = float(server.extra["tail_ref"][k])
            tasks.append(rank_task(k, r, self._device_state(server, r), steps, seeds[k], regularizer=penalty,
                                   memo={"tail_ref": None if math.isnan(ref) else ref}))
        return tasks

    def aggregate(self, rnd: int, server: ServerState, updates: list[ClientUpdate],
                  delivered: set[int]) -> tuple[ServerState, dict[str, Any]]:
        local = {u.device: self._local_prune(u) for u in updates}  # device-local, delivered or not
        ranks = np.array(server.extra["ranks"], copy=True)                  # (K,)
        tail_ref = np.array(server.extra["tail_ref"], dtype=float, copy=True)  # (K,), NaN: none
        for k, (_, rank, _, ref) in local.items():
            ranks[k], tail_ref[k] = rank, np.nan if ref is None else ref
        extra = {"ranks": ranks, "tail_ref": tail_ref}
        pruned = sorted(k for k, v in local.items() if v[2])
        ok = delivered_updates(updates, delivered)
        report: dict[str, Any] = {"aggregated": len(ok), "global_rank": self.context.r_max, "pruned": pruned,
                                  "ranks_delivered": [local[u.device][1] for u in ok], "cross_cov_fro": None}
        if not ok:
            return ServerState(server.tensors, extra), report
        states = [local[u.device][0] for u in ok]
        glob, cov = self._aggregate_states(states, data_weights(ok))
        report["cross_cov_fro"] = cov
        return ServerState(glob, extra), report

    def _aggregate_states(self, states: list[dict], sizes: list[float]) -> tuple[dict, float]:
        ctx, o = self.context, self.options
        ranks = [rank_of(s) for s in states]
        scales = [ctx.scale(r) for r in ranks]
        pairs = lora_pairs(states[0])
        layers, cov_sq = {}, 0.0
        for p, (a_key, b_key) in pairs.items():
            As, Bs = factors(states, a_key, b_key)
            weighting, w = o.weighting, sizes
            if weighting == "norm":
                try:
                    w = hetlora_weights(As, Bs, scales)
                except ValueError:  # every update of this layer is zero
                    log.info("hetlora: norm weights undefined for %s (all updates zero); data sizes used", p)
                    weighting = "data"
            layers[p] = hetlora_aggregate(As, Bs, ranks, scales, ctx.r_max, weighting, sizes)
            padded = [pad_rank(A, B * s, ctx.r_max) for A, B, s in zip(As, Bs, scales)]
            if len(states) > 1:
                cov = cross_covariance([a for a, _ in padded], [b for _, b in padded], w)
                cov_sq += float(cov.pow(2).sum())
        return assemble(pairs, layers, average_heads(states, sizes)), math.sqrt(cov_sq)

    # -- self-pruning (device side, pure) ---------------------------------------------------------
    def _local_prune(self, update: ClientUpdate) -> tuple[dict, int, bool, float | None]:
        """``(state as uploaded, rank, pruned, next tail reference)`` of one trained device."""
        o, state = self.options, update.state
        r = rank_of(state)
        if not o.self_prune:
            return state, r, False, None
        pairs = lora_pairs(state)
        tau = sum(hetlora_prune_rank(state[a], state[b], r, o.prune_gamma, None, min(o.min_rank, r)).tail_norm
                  for a, b in pairs.values())
        prev = update.memo.get("tail_ref")
        new_rank = max(int(math.floor(o.prune_gamma * r)), o.min_rank)
        if prev is None or not tau < (1.0 - o.prune_rel_tol) * prev or new_rank >= r:
            return state, r, False, tau
        layers = self._prune_layers(state, pairs, r, new_rank)
        return assemble(pairs, layers, head_state(state)), new_rank, True, None

    def _prune_layers(self, state: dict, pairs: dict, r: int, new_rank: int) -> dict:
        """First ``new_rank`` components of every layer, ``B`` rescaled by ``new_rank / r`` (module
        docstring): ``B`` with scale ``alpha / r`` folded in, redistributed at scale ``alpha / new_rank``."""
        s_old, s_new = self.context.scale(r), self.context.scale(new_rank)
        return {p: hetlora_distribute(state[a], state[b] * s_old, new_rank, s_new) for p, (a, b) in pairs.items()}

    # -- hooks ----------------------------------------------------------------------------------
    def uplink_payload(self, update: ClientUpdate) -> dict[str, torch.Tensor]:
        return self._local_prune(update)[0]

    def global_task(self, server: ServerState) -> ClientTask:
        r = self.context.r_max
        return ClientTask(-1, self._device_state(server, r), 0, 0, adapter=rank_adapter_name(r), rank=r)

    def device_ranks(self, server: ServerState) -> np.ndarray:
        return np.asarray(server.extra["ranks"])
