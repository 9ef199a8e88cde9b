r"""Sparsification baselines of SOFT [kim2025soft] (papers.md §2.8 [R] our reconstruction).

``topk_lora``
    The naive scheme as the v2 abstract describes it ("naively applying conventional
    sparsification to the two LoRA factors"): FedIT [zhang2024fedit] whose uploads keep,
    independently in every ``A`` and ``B`` factor, the :math:`\lceil\kappa N\rceil` entries of
    largest *value* magnitude (element-wise top-k, position or mask index bits); entries not
    sent are zero, and the server averages the sparse factors (zeros included). Keep ratios of
    0.1-0.3 are the regime of configs/soft/sst2-topk.yaml.
``topk_lora_forgiving``
    A forgiving variant (our earlier baseline, kept as a meaningful second one): entries ranked
    by their round *update* magnitude :math:`|x_k - \bar x|`, entries not sent keep the
    round-start global value (a zero update). Options ``select_on`` and ``fill`` give every
    combination.
``svd_lora``
    The compute-heavy oracle: each device forms :math:`B_kA_k` and sends the rank-:math:`m`
    truncated SVD factors (:math:`m(d+n)` values per matrix, no index bits); the server averages
    the products and redistributes a rank-:math:`r` SVD, as FlexLoRA [bai2024flexlora] does.

Both read the per-device keep ratio from ``plan.directives.sparsity`` when a planner sets it,
else from their ``keep_ratio`` option (:func:`airtune.strategies.soft.keep_counts`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from airtune.allocation.result import Allocation
from airtune.lora.adapters import lora_pairs
from airtune.lora.soft_payload import soft_payload_bits
from airtune.lora.sparsify import kept_elements, masked_aggregate, svd_truncate, topk_mask, topk_payload_bits
from airtune.registry import STRATEGIES
from airtune.strategies.base import ServerState, Strategy, tensor_bits
from airtune.strategies.common import average_heads, data_weights, head_state, serial_linalg
from airtune.strategies.fedit import cross_cov_norm
from airtune.strategies.flexlora import FlexLoRA, FlexLoRAOptions
from airtune.strategies.soft import keep_counts
from airtune.training.engine import ClientTask, ClientUpdate


def _factor_keys(state: dict[str, torch.Tensor]) -> list[str]:
    return [k for pair in lora_pairs(state).values() for k in pair]


def _keep_ratios(plan: Allocation | None, selected: list[int], default: float) -> dict[int, float]:
    sparsity = None if plan is None else plan.directives.sparsity
    ratios = None if sparsity is None else sparsity.keep_ratio
    return {k: float(default if ratios is None else np.clip(ratios[k], 1e-9, 1.0))
            for k in selected}


class TopkOptions(BaseModel):
    """Options of ``topk_lora``."""

    model_config = ConfigDict(extra="forbid")

    keep_ratio: float = Field(1.0, gt=0, le=1, description="kept share of the entries of each factor")
    select_on: Literal["value", "delta"] = Field("value", description="rank entries by |factor value| or by |update|")
    fill: Literal["zero", "global"] = Field(
        "zero", description="unsent entries: zero (naive) or the round-start global value (forgiving)")
    index_coding: Literal["position", "mask", "min"] = Field(
        "position", description="index bits: k*ceil(log2 N), an N-bit mask, or the smaller")
    aggregation: Literal["keep_global", "renormalise"] = Field(
        "keep_global", description="average every device's sparse factor (unsent = fill value), or senders only")
    bits_per_value: int = Field(32, ge=1, le=64, description="bits per transmitted value")


@STRATEGIES.register("topk_lora")
class TopkLoRA(Strategy):
    accepts_directives = frozenset({"sparsity"})
    """FedIT with element-wise top-k magnitude sparsification of A and B separately (naive baseline)."""

    name = "topk_lora"
    Options = TopkOptions

    def configure_round(self, rnd: int, server: ServerState, selected: list[int],
                        seeds: dict[int, int], steps: int, plan: Allocation | None = None) -> list[ClientTask]:
        kappa = _keep_ratios(plan, selected, self.options.keep_ratio)
        return [ClientTask(device=k, state=server.tensors, steps=steps, seed=seeds[k],
                           memo={"topk_ratio": kappa[k]}) for k in selected]

    def _mask(self, g: torch.Tensor, x: torch.Tensor, ratio: float) -> torch.Tensor:
        score = x - g if self.options.select_on == "delta" else x
        return topk_mask(score, kept_elements(x.numel(), ratio))

    def aggregate(self, rnd: int, server: ServerState, updates: list[ClientUpdate],
                  delivered: set[int]) -> tuple[ServerState, dict[str, Any]]:
        ok = sorted((u for u in updates if u.device in delivered), key=lambda u: u.device)
        if not ok:
            return server, {"aggregated": 0, "cross_cov_fro": None}
        g, weights = server.tensors, data_weights(ok)
        new, effective = dict(g), [dict(u.state) for u in ok]
        dropped, total = 0.0, 0.0
        for key in _factor_keys(g):
            masks = [self._mask(g[key], u.state[key], float(u.memo["topk_ratio"])) for u in ok]
            fill = torch.zeros_like(g[key]) if self.options.fill == "zero" else g[key]
            new[key] = masked_aggregate(fill, [u.state[key] for u in ok], masks, weights, self.options.aggregation)
            for st, u, mk in zip(effective, ok, masks):
                st[key] = torch.where(mk, u.state[key], fill)
                delta = (u.state[key] - fill).double()
                dropped += float(delta[~mk].pow(2).sum())
                total += float(delta.pow(2).sum())
        new.update(average_heads([u.state for u in ok], weights))
        return ServerState(new, dict(server.extra)), {
            "aggregated": len(ok), "cross_cov_fro": cross_cov_norm(effective, weights),
            "topk_dropped_energy": dropped / total if total > 0 else 0.0}

    def uplink_bits(self, update: ClientUpdate) -> int:
        """Kept entries of every factor with their index bits, plus the dense head."""
        o, s = self.options, update.state
        keys = _factor_keys(s)
        numels = [s[k].numel() for k in keys]
        kept = [kept_elements(n, float(update.memo["topk_ratio"])) for n in numels]
        return topk_payload_bits(numels, kept, o.bits_per_value, o.index_coding) + tensor_bits(head_state(s))


class ForgivingTopkOptions(TopkOptions):
    """Options of ``topk_lora_forgiving``: ``topk_lora``'s, defaults ranked by update, global fill."""

    model_config = ConfigDict(extra="forbid")

    select_on: Literal["value", "delta"] = Field("delta", description="rank entries by |factor value| or by |update|")
    fill: Literal["zero", "global"] = Field(
        "global", description="unsent entries: zero (naive) or the round-start global value (forgiving)")


@STRATEGIES.register("topk_lora_forgiving")
class ForgivingTopkLoRA(TopkLoRA):
    """Element-wise top-k of the update of A and B, unsent entries keep the global value (forgiving)."""

    name = "topk_lora_forgiving"
    Options = ForgivingTopkOptions


class SvdOptions(FlexLoRAOptions):
    """Options of ``svd_lora`` (FlexLoRA's, plus the truncation)."""

    model_config = ConfigDict(extra="forbid")

    keep_ratio: float = Field(1.0, gt=0, le=1, description="kept share m/r of the SVD components of B A")
    bits_per_value: int = Field(32, ge=1, le=64, description="bits per transmitted value")


@STRATEGIES.register("svd_lora")
class SvdLoRA(FlexLoRA):
    accepts_directives = frozenset({"sparsity"})
    """Rank-m truncated SVD of each device's B A as the upload (oracle); FlexLoRA aggregation."""

    name = "svd_lora"
    supports_heterogeneous_ranks = False
    bits_known_before_training = False   # FlexLoRA's flag does not carry over: the upload is the update's SVD
    Options = SvdOptions

    def configure_round(self, rnd: int, server: ServerState, selected: list[int],
                        seeds: dict[int, int], steps: int, plan: Allocation | None = None) -> list[ClientTask]:
        m = keep_counts(plan, selected, self.context.lora.rank, self.options.keep_ratio)
        tasks = super().configure_round(rnd, server, selected, seeds, steps, plan)
        return [dataclasses.replace(t, memo={**t.memo, "svd_keep": m[t.device]}) for t in tasks]

    def aggregate(self, rnd: int, server: ServerState, updates: list[ClientUpdate],
                  delivered: set[int]) -> tuple[ServerState, dict[str, Any]]:
        truncated, tail = [], {}
        scale2 = self.context.scale(self.context.lora.rank) ** 2
        with serial_linalg():
            for u in updates:
                m, st, err = int(u.memo["svd_keep"]), dict(u.state), 0.0
                for a_key, b_key in lora_pairs(st).values():
                    st[a_key], st[b_key], sigma = svd_truncate(st[a_key], st[b_key], m)
                    err += float(sigma[m:].double().pow(2).sum())
                tail[u.device] = scale2 * err
                truncated.append(dataclasses.replace(u, state=st))
        new, report = super().aggregate(rnd, server, truncated, delivered)
        ok = [u for u in truncated if u.device in delivered]
        if ok:
            p = np.asarray(data_weights(ok)) / np.sum(data_weights(ok))
            report["svd_truncation_error"] = float(sum(pk**2 * tail[u.device] for pk, u in zip(p, ok)))
        return new, report

    def uplink_bits(self, update: ClientUpdate) -> int:
        """m(d + n) values per adapted matrix (no index bits) plus the dense head."""
        s = update.state
        dims = [(int(s[a].shape[1]), int(s[b].shape[0])) for a, b in lora_pairs(s).values()]
        bits = soft_payload_bits(int(update.memo["svd_keep"]), dims, self.context.lora.rank,
                                 self.options.bits_per_value, "none")
        return int(bits) + tensor_bits(head_state(s))
