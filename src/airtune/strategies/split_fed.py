r"""Split federated LoRA [wang2025sfl]: embedding and head on the device, encoder + LoRA on the server.

papers.md §1.3-§1.4 [S] skeleton, [R] details; SFL-V1/V2 of §4.6 [thapa2022splitfed].

Each scheduled device trains with the split loop (``training/split_loop.py``): every local
iteration its embeddings go up, the encoder features come down, the feature gradient goes up,
all with their measured sizes. Per round:

* the server sends the global task head down and receives the trained head back (FedAvg of
  the heads over the delivered devices, data-size weights [mcmahan2017fedavg]);
* the LoRA factors never cross the air. ``server_lora = per_device`` (SFL-V1, papers.md §1.3
  default (a)): the server keeps one LoRA copy per scheduled device, all starting from the
  global LoRA, and averages them with data-size weights at the end of the round.
  ``server_lora = shared`` (SFL-V2, design (b)): one server-side LoRA is updated device after
  device within the round (in the order of the scheduled devices); the round ends with it.

Outage: the runner samples one delivery per device and round. We apply it to the device's
final head upload only: the per-iteration activation exchanges are assumed to get through
(their latency and energy are charged at the allocated rate), so every scheduled device's LoRA
copy reaches the server's average (V1) or chain (V2), and a lost round loses that device's head.
[R] our choice; papers.md §1.3 defaults to error-free links for paper 1.

Evaluation runs the unsplit model: the split forward is the same computation (tested).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from airtune.allocation.result import Allocation
from airtune.lora.adapters import head_keys
from airtune.registry import STRATEGIES
from airtune.strategies.aggregate import fedavg
from airtune.strategies.base import ServerState, Strategy, delivered_updates, tensor_bits
from airtune.strategies.common import data_weights, head_state
from airtune.training.engine import ClientTask, ClientUpdate
from airtune.training.split_loop import LinkTraffic

BITS_PER_VALUE = 32        # fp32 activations: the prior of the traffic estimate before any round
LENGTH_BITS = 32           # one int32 length per example (the attention mask)


class SplitOptions(BaseModel):
    """Options of ``split_fedlora``."""

    model_config = ConfigDict(extra="forbid")
    server_lora: Literal["per_device", "shared"] = Field(
        "per_device", description="per_device: one server-side LoRA copy per device, averaged (SFL-V1); "
                                  "shared: one LoRA updated device after device (SFL-V2)")
    downlink: Literal["tokens", "pooled"] = Field(
        "tokens", description="tokens: every real token's encoder feature comes down, the device pools; "
                              "pooled: the server pools and sends one feature per example")



def _traffic(update: ClientUpdate) -> LinkTraffic:
    """The split loop's measured link traffic of an update (none: the update did not come from
    the split loop, a configuration error)."""
    if update.traffic is None:
        raise ValueError(f"device {update.device}'s update carries no split-loop traffic (ClientUpdate.traffic); "
                         "it was not trained with ClientTask.loop = 'split'")
    return update.traffic

@STRATEGIES.register("split_fedlora")
class SplitFedLoRA(Strategy):
    """Split federated LoRA with per-iteration activation traffic priced on the channel."""

    name = "split_fedlora"
    Options = SplitOptions

    # -- the contract -------------------------------------------------------------------------
    def configure_round(self, rnd: int, server: ServerState, selected: list[int],
                        seeds: dict[int, int], steps: int, plan: Allocation | None = None) -> list[ClientTask]:
        chain = (tuple(k for k in server.tensors if k not in head_keys(server.tensors))
                 if self.options.server_lora == "shared" else ())
        return [ClientTask(device=k, state=server.tensors, steps=steps, seed=seeds[k], loop="split",
                           downlink=self.options.downlink, chain=chain) for k in selected]

    def aggregate(self, rnd: int, server: ServerState, updates: list[ClientUpdate],
                  delivered: set[int]) -> tuple[ServerState, dict[str, Any]]:
        extra = dict(server.extra)
        if updates:
            extra["split_bits_per_sample"] = measured_bits_per_sample(updates, self.context.samples_per_round)
        trained = sorted(updates, key=lambda u: u.device)
        ok = delivered_updates(updates, delivered)
        tensors = dict(server.tensors)
        lora_keys = [k for k in tensors if k not in head_keys(tensors)]
        if trained:
            if self.options.server_lora == "shared":     # the chain's end: the last device trained
                last = updates[-1].state
                tensors.update({k: last[k] for k in lora_keys})
            else:
                avg = fedavg([{k: u.state[k] for k in lora_keys} for u in trained], data_weights(trained))
                tensors.update(avg)
        if ok:
            tensors.update(fedavg([head_state(u.state) for u in ok], data_weights(ok)))
        copies = len(trained) if self.options.server_lora == "per_device" else min(len(trained), 1)
        report = {"aggregated": len(ok), "lora_copies": copies,
                  "split_uplink_bits": int(sum(_traffic(u).uplink_bits for u in updates)),
                  "split_downlink_bits": int(sum(_traffic(u).downlink_bits for u in updates))}
        return ServerState(tensors, extra), report

    # -- what crosses the air -----------------------------------------------------------------
    def downlink_payload(self, task: ClientTask) -> dict[str, torch.Tensor]:
        return head_state(task.state)

    def uplink_payload(self, update: ClientUpdate) -> dict[str, torch.Tensor]:
        return head_state(update.state)

    def downlink_bits(self, task: ClientTask, update: ClientUpdate) -> int:
        """The global head plus every iteration's features (and clipping factor), as measured."""
        return tensor_bits(self.downlink_payload(task)) + int(_traffic(update).downlink_bits)

    def uplink_bits(self, update: ClientUpdate) -> int:
        """The trained head plus every iteration's embeddings, lengths and feature gradients."""
        return tensor_bits(self.uplink_payload(update)) + int(_traffic(update).uplink_bits)

    def device_compute_fraction(self) -> float:
        """Device share of a sample's training FLOPs: embedding + head (``models/profile.py``)."""
        profile = self.context.profile
        if profile is None:
            raise ValueError("split_fedlora needs the model profile in its StrategyContext")
        return profile.device_fraction(pooling_on_device=self.options.downlink == "tokens")

    def server_compute_fraction(self) -> float:
        """The encoder's share of a sample's training FLOPs, computed on the edge server."""
        return 1.0 - self.device_compute_fraction()

    def planned_bits(self, server: ServerState, num_devices: int) -> tuple[np.ndarray, np.ndarray]:
        """Head bits plus samples x activation bits per sample: measured in the previous round
        (``server.extra``), else the prior of :func:`prior_bits_per_sample`."""
        ctx = self.context
        if ctx.samples_per_round is None or ctx.profile is None:
            raise ValueError("split_fedlora needs samples_per_round and the model profile in its context")
        per_sample = server.extra.get("split_bits_per_sample") or prior_bits_per_sample(
            ctx.profile.hidden_size, ctx.profile.mean_tokens, self.options.downlink)
        head_bits = float(tensor_bits(head_state(server.tensors)))
        samples = np.asarray(ctx.samples_per_round, dtype=float)
        return head_bits + samples * per_sample[0], head_bits + samples * per_sample[1]


def prior_bits_per_sample(hidden: int, mean_tokens: float, downlink: str) -> tuple[float, float]:
    r"""Activation bits per training sample before anything was measured, (uplink, downlink).

    tokens: up :math:`2\bar L H q + 32` (embeddings, feature gradient, length), down
    :math:`\bar L H q`; pooled: up :math:`\bar L H q + H q + 32`, down :math:`H q`, with
    :math:`q = 32`. Clipping scalars are ignored here (a few bits per iteration).
    """
    tokens = mean_tokens * hidden * BITS_PER_VALUE
    feature = tokens if downlink == "tokens" else hidden * BITS_PER_VALUE
    return float(tokens + feature + LENGTH_BITS), float(feature)


def measured_bits_per_sample(updates: list[ClientUpdate], samples_per_round: np.ndarray | None) -> tuple[float, float]:
    """Measured activation bits per sample of this round's updates, (uplink, downlink)."""
    if samples_per_round is None:
        raise ValueError("split_fedlora needs samples_per_round in its context")
    n = float(sum(samples_per_round[u.device] for u in updates))
    up = sum(_traffic(u).uplink_bits for u in updates)
    down = sum(_traffic(u).downlink_bits for u in updates)
    return float(up) / n, float(down) / n


__all__ = ["SplitFedLoRA", "SplitOptions", "measured_bits_per_sample", "prior_bits_per_sample"]
