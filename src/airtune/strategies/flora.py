r"""FLoRA [wang2024flora]: stack the delivered LoRAs, merge into the base weights, restart (papers.md §4.5 [K, C]).

Server state
    ``extra["merged"]``: the sum of every round's stacked product, ``Σ_t B_stk^t A_stk^t``, per
    adapted layer ``(d, n)`` (None before the first merge): the devices' base weights are the
    pre-trained ``W0`` plus this, so the server state alone rebuilds them (resume).
    ``extra["merged_rank"]``: ``Σ`` of all stacked ranks so far. ``extra["stacks"]``: list of
    ``(round, {layer: (A_stk: (Σ r_k, n), B_stk: (d, Σ r_k))})``, oldest first, the stacked pair
    of each round that merged something and that a device may still be sent (see below);
    ``extra["stacks_from"]``: every such round ``>= stacks_from`` is in ``stacks``.
    ``extra["synced"]``: (K,) int64, device ``k`` holds the stacks of all rounds ``< synced[k]``
    (the last round it received the model; 0 for a device that never took part, which holds
    what a device of round 0 holds: nothing). All plain data (checkpoint, exact resume).
    ``tensors``: the shared model's initial rank-``r_max`` adapter (a template of the layer shapes,
    never updated) and the global head.

Round
    Every device merges the stacks it receives into its frozen base weight
    (:func:`~airtune.lora.ops_hetero.flora_merge`; simulated by setting the shared model's base
    weights to ``W0 + merged``) and trains a *fresh* rank-``r_k`` adapter: ``A_k`` Kaiming-uniform
    as PEFT initialises it (:func:`~airtune.lora.ops.ffa_init_A`, seed
    ``int_seed(seed, "strategy", round, device, layer)``), ``B_k = 0``, with the global head. The
    server stacks the delivered pairs, rows of ``A`` scaled by the data-size weights ``p_k`` and
    the LoRA scale ``s_k = alpha / r_k`` folded into ``B``
    (:func:`~airtune.lora.ops_hetero.flora_stack`), so that ``B_stk A_stk = Σ_k p_k s_k B_k A_k``
    exactly for any ranks, and FedAvg-s the head. Lost updates are ignored.

Communication: the server broadcasts each round's stacked pair (``Σ r_k (d + n)`` values per
layer, growing with the number of delivered participants). A device scheduled in round ``t``
must receive every stack it has not merged: those of rounds ``synced[k] .. t-1`` (one round's
stack for a device that took part in round ``t-1``, every stack since round 0 for one that never
took part); devices not scheduled receive nothing and catch up when next scheduled. Our choice:
per adapted layer, the server sends the merged ``(d, n)`` offset instead (the device replaces
its own) when it has fewer bits than those stacks; on a tie, the stacks. The downlink is the head
plus these tensors (:meth:`FLoRA.receive`, counted as numel x dtype width); the fresh ``A_k`` is
drawn on the device from its seed and not sent. ``planned_bits`` gives the allocator the same
downlink. A stored stack is dropped once the stacks stored from it on outweigh the offset on
every layer: every device missing it gets the offsets, now and later (the stacks only grow).

Evaluation: ``W0 + merged`` with a zero adapter. The checkpoint adapter re-factors ``merged`` at
rank ``min(merged_rank, min(d, n))`` by SVD (exact).

Diagnostics: ``stack_rank`` (``Σ r_k`` this round = the rank of this round's stack), ``global_rank``
(rank bound of the merged update, ``min(merged_rank, min(d, n))``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from airtune.allocation.result import Allocation
from airtune.experiment.seeds import int_seed
from airtune.lora.adapters import lora_pairs, rank_adapter_name
from airtune.lora.ops import ffa_init_A
from airtune.lora.ops_hetero import flora_merge, flora_stack
from airtune.registry import STRATEGIES
from airtune.strategies.base import ServerState, Strategy, delivered_updates, tensor_bits
from airtune.strategies.common import (
    assemble,
    average_heads,
    data_weights,
    delta_export,
    factors,
    head_state,
    rank_of,
    rank_task,
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
    supports_server_optimizer = False   # the aggregate merges into the base and restarts the factors
    supports_heterogeneous_ranks = True
    Options = FLoRAOptions

    def init_state(self, tensors: dict[str, torch.Tensor]) -> ServerState:
        if rank_of(tensors) != self.context.r_max:
            raise ValueError(f"initial state has rank {rank_of(tensors)}, expected r_max = {self.context.r_max}")
        K = len(self.context.device_ranks)
        return ServerState({k: v.clone() for k, v in tensors.items()},
                           {"merged": None, "merged_rank": 0, "stacks": [], "stacks_from": 0,
                            "synced": np.zeros(K, dtype=np.int64)})

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
                        seeds: dict[int, int], steps: int, plan: Allocation | None = None) -> list[ClientTask]:
        ranks = self.context.device_ranks
        return [rank_task(k, int(ranks[k]), self.fresh_state(server, rnd, k, int(ranks[k])), steps, seeds[k],
                          base_delta=server.extra["merged"], receive=self.receive(server, k))
                for k in selected]

    def receive(self, server: ServerState, device: int) -> dict[str, torch.Tensor]:
        """What ``device`` must be sent to hold ``W0 + merged`` (module docstring): per layer the
        stacks of rounds ``>= synced[device]`` (``<layer>.stack<round>_A`` / ``_B``) or, when
        smaller or when some of them were dropped, the offset ``<layer>.merged``."""
        extra, merged = server.extra, server.extra["merged"]
        if merged is None:
            return {}
        since = int(extra["synced"][device])
        missed = [(t, st) for t, st in extra["stacks"] if t >= since]
        complete = since >= extra["stacks_from"]   # else some stack it lacks was dropped: offsets
        out: dict[str, torch.Tensor] = {}
        for p, delta in merged.items():
            stacks, dense = _layer_stacks(missed, p), {f"{p}.merged": delta}
            out.update(stacks if complete and tensor_bits(stacks) <= tensor_bits(dense) else dense)
        return out

    def aggregate(self, rnd: int, server: ServerState, updates: list[ClientUpdate],
                  delivered: set[int]) -> tuple[ServerState, dict[str, Any]]:
        ok = delivered_updates(updates, delivered)
        old = server.extra["merged"]
        synced = np.array(server.extra["synced"], dtype=np.int64, copy=True)
        synced[[u.device for u in updates]] = rnd   # trained: received the stacks of rounds < rnd
        if not ok:  # nothing merged: nothing new to broadcast
            return (ServerState(server.tensors, {**server.extra, "synced": synced}),
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
        stacks, start = _trim([*server.extra["stacks"], (rnd, stack)], server.extra["stacks_from"], merged)
        extra = {"merged": merged, "merged_rank": server.extra["merged_rank"] + sum(ranks),
                 "stacks": stacks, "stacks_from": start, "synced": synced}
        return ServerState(tensors, extra), {"aggregated": len(ok), "stack_rank": int(sum(ranks)),
                                             "global_rank": self._rank_bound(extra)}

    def _rank_bound(self, extra: dict) -> int:
        merged = extra["merged"]
        if merged is None:
            return 0
        return min(extra["merged_rank"], max(min(d.shape) for d in merged.values()))

    # -- hooks ----------------------------------------------------------------------------------
    def downlink_payload(self, task: ClientTask) -> dict[str, torch.Tensor]:
        """The head and what the device must receive (:meth:`receive`; not the fresh adapter,
        which the device draws itself)."""
        return {**head_state(task.state), **task.receive}

    def planned_bits(self, server: ServerState, num_devices: int) -> tuple[np.ndarray, np.ndarray]:
        """Downlink: what ``downlink_payload`` will charge each device; uplink: the default."""
        up, _ = super().planned_bits(server, num_devices)
        head = tensor_bits(head_state(server.tensors))
        return up, np.array([float(head + tensor_bits(self.receive(server, k))) for k in range(num_devices)])

    def global_task(self, server: ServerState) -> ClientTask:
        r = self.context.r_max
        pairs = lora_pairs(server.tensors)
        state = assemble(pairs, zeros_like_pairs(pairs, server.tensors, r), head_state(server.tensors))
        return ClientTask(-1, state, 0, 0, adapter=rank_adapter_name(r), rank=r, base_delta=server.extra["merged"])

    def export_adapter(self, server: ServerState) -> tuple[int, dict[str, torch.Tensor]] | None:
        if server.extra["merged"] is None:
            return None
        return delta_export(lora_pairs(server.tensors), server.extra["merged"], head_state(server.tensors),
                            self.context.lora.alpha, max_rank=server.extra["merged_rank"])


def _layer_stacks(stacks: list, prefix: str) -> dict[str, torch.Tensor]:
    """Layer ``prefix``'s factors of the stored stacks ``[(round, {layer: (A, B)})]``, by name."""
    return {f"{prefix}.stack{t}_{n}": x for t, st in stacks for n, x in zip("AB", st[prefix])}


def _trim(stacks: list, start: int, merged: dict[str, torch.Tensor]) -> tuple[list, int]:
    """Drop the oldest stacks while the stacks from the oldest on outweigh the offset on every
    layer (a device missing the oldest needs them all, so it gets the offsets); new ``stacks_from``."""
    stacks = list(stacks)
    while stacks and all(tensor_bits(_layer_stacks(stacks, p)) > tensor_bits({p: d}) for p, d in merged.items()):
        start = int(stacks.pop(0)[0]) + 1
    return stacks, start
