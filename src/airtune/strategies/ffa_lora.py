r"""FFA-LoRA [sun2024ffalora]: A frozen at a shared seeded init, only B trained and sent (papers.md §4.4 [K]).

Server state
    ``tensors``: per adapted layer the frozen ``A: (r_max, n)``, drawn once with
    :func:`~airtune.lora.ops.ffa_init_A` from ``int_seed(seed, "strategy", 0, layer)`` (every
    device can rebuild it from the seed), the global ``B: (d, r_max)`` with the LoRA scale folded
    in (effective update ``B @ A``), and the head.

Round
    Device ``k`` of rank ``r_k`` trains ``B_k`` (and the head) on top of the first ``r_k`` rows of
    the common ``A``, which stays frozen (``requires_grad`` off in the engine). Its ``B_k`` starts
    from the first ``r_k`` columns of the global ``B`` divided by its scale ``alpha / r_k``. The
    server averages the delivered ``B_k`` with data-size weights
    (:func:`~airtune.lora.ops.ffa_aggregate`); with heterogeneous ranks each ``s_k B_k`` is first
    zero-padded to ``r_max`` columns (:func:`~airtune.lora.ops.pad_rank`) [R: our extension, the
    paper uses one rank]. Since ``pad(B_k) A = B_k A_{:r_k}``, the aggregate is exact:
    ``B̄ A = Σ_k p_k s_k B_k A_{:r_k}`` (no cross-covariance term). Lost updates are ignored.

Communication: neither direction carries ``A`` (``uplink_payload`` and ``downlink_payload``
drop it), which halves the LoRA payload at ``d = n``.

Diagnostics: ``cross_cov_fro`` (of the common ``A`` and padded ``B``; zero up to rounding, logged
as a check), ``global_rank`` (``r_max``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

from airtune.allocation.result import Allocation
from airtune.experiment.seeds import int_seed
from airtune.lora.adapters import lora_pairs, rank_adapter_name
from airtune.lora.ops import cross_covariance, ffa_aggregate, ffa_init_A, pad_rank
from airtune.lora.ops_hetlora import hetlora_distribute
from airtune.registry import STRATEGIES
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

FROZEN = ("lora_A",)


class FFALoRAOptions(BaseModel):
    """Options of ``ffa_lora`` (none: the knob the paper studies is ``lora.alpha``)."""

    model_config = ConfigDict(extra="forbid")


def without_A(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors that cross the air: everything but the frozen A factors."""
    return {k: v for k, v in state.items() if ".lora_A." not in k}


@STRATEGIES.register("ffa_lora")
class FFALoRA(Strategy):
    """Federated freeze-A LoRA: shared frozen A, FedAvg of B."""

    name = "ffa_lora"
    bits_known_before_training = True
    supports_heterogeneous_ranks = True
    Options = FFALoRAOptions

    def init_state(self, tensors: dict[str, torch.Tensor]) -> ServerState:
        ctx = self.context
        if rank_of(tensors) != ctx.r_max:
            raise ValueError(f"initial state has rank {rank_of(tensors)}, expected r_max = {ctx.r_max}")
        pairs = lora_pairs(tensors)
        layers = {}
        for i, (p, (a_key, b_key)) in enumerate(pairs.items()):
            A = ffa_init_A(tuple(tensors[a_key].shape), int_seed(ctx.seed, "strategy", 0, i), tensors[a_key].dtype)
            layers[p] = (A, torch.zeros_like(tensors[b_key]))   # B = 0 (LoRA's init)
        return ServerState(assemble(pairs, layers, head_state(tensors)))

    def _device_state(self, server: ServerState, rank: int) -> dict[str, torch.Tensor]:
        pairs = lora_pairs(server.tensors)
        t = server.tensors
        layers = {p: hetlora_distribute(t[a], t[b], rank, self.context.scale(rank)) for p, (a, b) in pairs.items()}
        return assemble(pairs, layers, head_state(t))

    def configure_round(self, rnd: int, server: ServerState, selected: list[int],
                        seeds: dict[int, int], steps: int, plan: Allocation | None = None) -> list[ClientTask]:
        ranks = self.context.device_ranks
        return [rank_task(k, int(ranks[k]), self._device_state(server, int(ranks[k])), steps, seeds[k],
                          freeze=FROZEN) for k in selected]

    def aggregate(self, rnd: int, server: ServerState, updates: list[ClientUpdate],
                  delivered: set[int]) -> tuple[ServerState, dict[str, Any]]:
        ok = delivered_updates(updates, delivered)
        ctx = self.context
        if not ok:
            return server, {"aggregated": 0, "global_rank": ctx.r_max, "cross_cov_fro": None}
        states, sizes = [u.state for u in ok], data_weights(ok)
        ranks = [rank_of(s) for s in states]
        pairs = lora_pairs(server.tensors)
        layers, cov_sq = {}, 0.0
        for p, (a_key, b_key) in pairs.items():
            A = server.tensors[a_key]                                  # (r_max, n), common and frozen
            _, Bs = factors(states, a_key, b_key)
            for u, r in zip(ok, ranks):
                if not torch.equal(u.state[a_key], A[:r]):
                    raise RuntimeError(f"ffa_lora: device {u.device} changed its frozen A of {p}")
            B_pad = [pad_rank(A[:r], B * ctx.scale(r), ctx.r_max)[1] for B, r in zip(Bs, ranks)]
            B_bar = ffa_aggregate(B_pad, sizes)
            layers[p] = (A, B_bar)
            if len(ok) > 1:
                cov_sq += float(cross_covariance([A] * len(ok), B_pad, sizes).pow(2).sum())
        new = ServerState(assemble(pairs, layers, average_heads(states, sizes)), dict(server.extra))
        return new, {"aggregated": len(ok), "global_rank": ctx.r_max, "cross_cov_fro": math.sqrt(cov_sq)}

    # -- hooks ----------------------------------------------------------------------------------
    def uplink_payload(self, update: ClientUpdate) -> dict[str, torch.Tensor]:
        return without_A(update.state)

    def downlink_payload(self, task: ClientTask) -> dict[str, torch.Tensor]:
        return without_A(task.state)

    def global_task(self, server: ServerState) -> ClientTask:
        r = self.context.r_max
        return ClientTask(-1, self._device_state(server, r), 0, 0, adapter=rank_adapter_name(r), rank=r)
