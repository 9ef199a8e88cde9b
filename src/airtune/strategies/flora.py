r"""FLoRA [wang2024flora]: stack the delivered LoRAs, merge into the base weights, restart (papers.md §4.5 [K, C]).

Server state
    ``extra["merged"]``: the sum of every round's stacked product, ``Σ_t B_stk^t A_stk^t``, per
    adapted layer ``(d, n)`` (None before the first merge): the devices' base weights are the
    pre-trained ``W0`` plus this, so the server state alone rebuilds them (resume). ``extra["stack"]``:
    the last round's stacked factors ``(A_stk: (Σ r_k, n), B_stk: (d, Σ r_k))`` per layer, which is
    what the server broadcasts; ``extra["merged_rank"]``: ``Σ`` of all stacked ranks so far.
    ``tensors``: the shared model's initial rank-``r_max`` adapter (a template of the layer shapes,
    never updated) and the global head.

Round
    Every device merges the broadcast stack into its frozen base weight
    (:func:`~airtune.lora.ops_hetero.flora_merge`; simulated by setting the shared model's base
    weights to ``W0 + merged``) and trains a *fresh* rank-``r_k`` adapter: ``A_k`` Kaiming-uniform
    as PEFT initialises it (:func:`~airtune.lora.ops.ffa_init_A`, seed
    ``int_seed(seed, "strategy", round, device, layer)``), ``B_k = 0``, with the global head. The
    server stacks the delivered pairs, rows of ``A`` scaled by the data-size weights ``p_k`` and
    the LoRA scale ``s_k = alpha / r_k`` folded into ``B``
    (:func:`~airtune.lora.ops_hetero.flora_stack`), so that ``B_stk A_stk = Σ_k p_k s_k B_k A_k``
    exactly for any ranks, and FedAvg-s the head. Lost updates are ignored.

Communication: the downlink carries the head and the last stack, ``Σ r_k (d + n)`` values per
layer, growing with the number of delivered participants; the fresh ``A_k`` is drawn on the
device from its seed and not sent. Devices not scheduled are assumed to receive the broadcast
too (not charged, as for every strategy in this runner).

Evaluation: ``W0 + merged`` with a zero adapter. The checkpoint adapter re-factors ``merged`` at
rank ``min(merged_rank, min(d, n))`` by SVD (exact).

Diagnostics: ``stack_rank`` (``Σ r_k`` this round = the downlinked rank), ``global_rank``
(rank bound of the merged update, ``min(merged_rank, min(d, n))``).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

from airtune.experiment.seeds import int_seed
from airtune.lora.adapters import lora_pairs, rank_adapter_name
from airtune.lora.ops import ffa_init_A
from airtune.lora.ops_hetero import flora_merge, flora_stack
from airtune.registry import STRATEGIES
from airtune.strategies.base import ServerState, Strategy, delivered_updates
from airtune.strategies.common import (
    assemble, average_heads, data_weights, delta_export, factors, head_state, rank_of, rank_task,
    zeros_like_pairs,
)
from airtune.training.engine import ClientTask, ClientUpdate


class FLoRAOptions(BaseModel):
    """Options of ``flora`` (none: aggregation weights are the local data sizes, as in the reference code)."""

    model_config = ConfigDict(extra="forbid")


@STRATEGIES.register("flora")
class FLoRA(Strategy):
    """Stacking aggregation with merge-and-restart on the devices."""

    name = "flora"
    supports_heterogeneous_ranks = True
    Options = FLoRAOptions

    def init_state(self, tensors: dict[str, torch.Tensor]) -> ServerState:
        if rank_of(tensors) != self.context.r_max:
            raise ValueError(f"initial state has rank {rank_of(tensors)}, expected r_max = {self.context.r_max}")
        return ServerState({k: v.clone() for k, v in tensors.items()},
                           {"merged": None, "stack": {}, "merged_rank": 0})

    def fresh_state(self, server: ServerState, rnd: int, device: int, rank: int) -> dict[str, torch.Tensor]:
        """A new rank-``rank`` adapter (seeded Kaiming-uniform A, zero B) with the global head."""
        pairs, t = lora_pairs(server.tensors), server.tensors
        layers = {}
        for i, (p, (a_key, b_key)) in enumerate(pairs.items()):
            n, d = t[a_key].shape[1], t[b_key].shape[0]
            A = ffa_init_A((rank, n), int_seed(self.context.seed, "strategy", rnd, device, i), t[a_key].dtype)
            layers[p] = (A, torch.zeros(d, rank, dtype=t[b_key].dtype))
        return assemble(pairs, layers, head_state(t))

    def configure_round(self, rnd: int, server: ServerState, selected: list[int],
                        seeds: dict[int, int], steps: int, plan: Any = None) -> list[ClientTask]:
        ranks = self.context.device_ranks
        return [rank_task(k, int(ranks[k]), self.fresh_state(server, rnd, k, int(ranks[k])), steps, seeds[k],
                          base_delta=server.extra["merged"], stack=server.extra["stack"])
                for k in selected]

    def aggregate(self, rnd: int, server: ServerState, updates: list[ClientUpdate],
                  delivered: set[int]) -> tuple[ServerState, dict[str, Any]]:
        ok = delivered_updates(updates, delivered)
        old = server.extra["merged"]
        if not ok:  # nothing merged: nothing new to broadcast
            return (ServerState(server.tensors, {**server.extra, "stack": {}}),
                    {"aggregated": 0, "stack_rank": 0, "global_rank": self._rank_bound(server.extra)})
        ctx = self.context
        states, sizes = [u.state for u in ok], data_weights(ok)
        ranks = [rank_of(s) for s in states]
        scales = [ctx.scale(r) for r in ranks]
        pairs = lora_pairs(server.tensors)
        merged, stack = {}, {}
        for p, (a_key, b_key) in pairs.items():
            As, Bs = factors(states, a_key, b_key)
            A_stk, B_stk = flora_stack(As, Bs, scales, sizes)             # (Σr, n), (d, Σr)
            base = old[p] if old is not None else torch.zeros(B_stk.shape[0], A_stk.shape[1], dtype=A_stk.dtype)
            merged[p], stack[p] = flora_merge(base, A_stk, B_stk), (A_stk, B_stk)
        tensors = {**server.tensors, **average_heads(states, sizes)}
        extra = {"merged": merged, "stack": stack, "merged_rank": server.extra["merged_rank"] + sum(ranks)}
        return ServerState(tensors, extra), {"aggregated": len(ok), "stack_rank": int(sum(ranks)),
                                             "global_rank": self._rank_bound(extra)}

    def _rank_bound(self, extra: dict) -> int:
        merged = extra["merged"]
        if merged is None:
            return 0
        return min(extra["merged_rank"], max(min(d.shape) for d in merged.values()))

    # -- hooks ----------------------------------------------------------------------------------
    def downlink_payload(self, task: ClientTask) -> dict[str, torch.Tensor]:
        """The head and the broadcast stack (not the fresh adapter, which the device draws itself)."""
        out = head_state(task.state)
        for p, (A_stk, B_stk) in task.info.get("stack", {}).items():
            out[f"{p}.stack_A"], out[f"{p}.stack_B"] = A_stk, B_stk
        return out

    def global_task(self, server: ServerState) -> ClientTask:
        r = self.context.r_max
        pairs = lora_pairs(server.tensors)
        state = assemble(pairs, zeros_like_pairs(pairs, server.tensors, r), head_state(server.tensors))
        return ClientTask(-1, state, 0, 0, info={"adapter": rank_adapter_name(r), "rank": r,
                                                 "base_delta": server.extra["merged"]})

    def export_adapter(self, server: ServerState) -> tuple[int, dict[str, torch.Tensor]] | None:
        if server.extra["merged"] is None:
            return None
        return delta_export(lora_pairs(server.tensors), server.extra["merged"], head_state(server.tensors),
                            self.context.lora.alpha, max_rank=server.extra["merged_rank"])
