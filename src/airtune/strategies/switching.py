r"""Model switching [wang2025switching]: M LoRA modules at the base station, devices subscribe.

papers.md §3.3 [B structure, R details]. The base station keeps :math:`M` LoRA modules
:math:`\{\mathcal L_m = (A_m, B_m)\}` on one frozen foundation model; what distinguishes the
modules is configuration (``module_ranks``, default :math:`\{4, 8, 16, 32\}`; two modules may
share a rank). Each round the planner (``allocation.name = model_switching``,
:mod:`airtune.allocation.switching.planner`) says which module(s) each scheduled device
subscribes to, in ``plan.directives.modules``: a (K,) module index (``-1`` idle) or a (K, M)
boolean mask (at most ``max_modules_per_device`` per row).

Server state
    ``tensors``: module ``m``'s LoRA factors (raw PEFT convention, scale :math:`\alpha/r_m`)
    and its own task head, under keys ``"m<m>/<PEFT key>"``. ``extra["updates"]``: (M,)
    number of delivered updates each module has aggregated so far. ``extra["dissimilarity"]``:
    (K,) each device's last measured dissimilarity :math:`\delta_k` (NaN: never measured).

Dissimilarity (for Theorem 1's heterogeneity term, paper-checks item 7; **our choice**, the
paper's symbols were lost): when a module aggregates at least two delivered updates, each of
them gets :math:`\delta_k = \|\Delta_k-\bar\Delta\|/\operatorname{mean}_j\|\Delta_j\|`, with
:math:`\Delta_k` the device's update of the module (all its tensors, flattened) and
:math:`\bar\Delta` their data-weighted mean (the FedAvg step). It is unit-free (the same scale for
every rank) and 0 for identical updates; one delivered update alone says nothing and leaves
:math:`\delta_k` as it was. The hint (:meth:`planner_hints`) sends the last value of each
device, and for devices never measured the mean of the measured ones (0 while none is): the
prior is "a typical device".

Round
    Device :math:`k` subscribed to module :math:`m` receives :math:`(A_m, B_m)` and the head of
    module :math:`m`, trains them in the shared model's adapter ``"m<m>"`` (one PEFT adapter
    per module, each with its own ``modules_to_save`` head copy) and uploads them. The server
    averages each module over the devices that subscribed to it **and** whose upload survived,
    weighted by local data size (FedIT-style separate averaging of :math:`A`, :math:`B` and the
    head, papers.md §3.3 step 4 [?]); a module nobody delivered keeps its value.

Inference
    Uniform ensemble of the modules' predicted probabilities (paper eq. 3): :meth:`eval_tasks`
    returns one task per module (``ensemble = all``) or per module that has aggregated at
    least one update (``ensemble = trained``, [R] our option).

Initialisation [R]: module :math:`m`'s :math:`A_m` is drawn like PEFT's default
(``kaiming_uniform(a=sqrt(5))``: :math:`U(-1/\sqrt{n}, 1/\sqrt{n})`, :math:`n` = input
dimension) from the stream ``int_seed(seed, "strategy", 1, m)``, :math:`B_m = 0`, and every
module starts from the model's initial head.

One owner for the module set: the strategy option ``module_ranks``. The strategy hands the
ranks and each module's exact payload to the planner before every round
(:meth:`planner_hints`, a :class:`~airtune.allocation.exchange.ModuleSetHint`); the planner has
no module option of its own.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from airtune.allocation.exchange import DissimilarityHint, Hints, ModuleSetHint
from airtune.allocation.result import Allocation
from airtune.errors import ConfigError
from airtune.experiment.seeds import int_seed
from airtune.lora.adapters import lora_pairs
from airtune.registry import STRATEGIES
from airtune.strategies.aggregate import fedavg
from airtune.strategies.base import ServerState, Strategy, delivered_updates, tensor_bits
from airtune.strategies.common import head_state
from airtune.training.engine import ClientTask, ClientUpdate

__all__ = ["ModelSwitching", "module_adapter_name", "subscriptions", "update_dissimilarity"]


def module_adapter_name(m: int) -> str:
    """Name of module ``m``'s PEFT adapter on the shared model (``"m0"``, ``"m1"`` ...)."""
    return f"m{int(m)}"


def _prefix(m: int) -> str:
    return f"m{int(m)}/"


def subscriptions(modules: Any, num_devices: int, num_modules: int) -> np.ndarray:
    """A (K, M) boolean subscription mask from a (K,) module index (``-1`` idle) or a (K, M) mask."""
    arr = np.asarray(modules)
    if arr.shape == (num_devices,):
        idx = arr.astype(int)
        if np.any((idx < -1) | (idx >= num_modules)):
            raise ValueError(f"plan.directives.modules has indices outside [-1, {num_modules - 1}]")
        mask = np.zeros((num_devices, num_modules), dtype=bool)
        on = idx >= 0
        mask[np.flatnonzero(on), idx[on]] = True
        return mask
    if arr.shape == (num_devices, num_modules):
        return arr.astype(bool)
    raise ValueError(f"plan.directives.modules must have shape ({num_devices},) or ({num_devices}, {num_modules}); "
                     f"got {arr.shape}")


def update_dissimilarity(updates: list[dict[str, torch.Tensor]], reference: dict[str, torch.Tensor],
                         weights: list[float]) -> np.ndarray:
    r""":math:`\delta_k=\|\Delta_k-\bar\Delta\|/\operatorname{mean}_j\|\Delta_j\|` (module docstring) of each
    update, shape (n,); :math:`\Delta_k` = update - ``reference`` over ``reference``'s keys,
    :math:`\bar\Delta` weighted by ``weights``. Zeros when every update is zero."""
    keys = sorted(reference)
    deltas = torch.stack([torch.cat([(u[k].double() - reference[k].double()).ravel() for k in keys])
                          for u in updates])
    w = torch.tensor(weights, dtype=torch.float64)
    mean = (w[:, None] * deltas).sum(dim=0) / w.sum()
    scale = float(deltas.norm(dim=1).mean())
    dev = (deltas - mean[None, :]).norm(dim=1)
    return np.asarray((dev / scale).tolist() if scale > 0 else np.zeros(len(updates)), dtype=float)


class SwitchingOptions(BaseModel):
    """Options of ``model_switching``."""

    model_config = ConfigDict(extra="forbid")

    module_ranks: list[PositiveInt] = Field(
        default_factory=lambda: [4, 8, 16, 32], min_length=1,
        description="LoRA rank of each module kept at the base station (the planner reads them from here)")
    max_modules_per_device: int = Field(1, ge=1, description="modules a device may train in one round")
    ensemble: Literal["all", "trained"] = Field(
        "all", description="inference ensemble: all modules (paper eq. 3) or those that aggregated an update")


@STRATEGIES.register("model_switching")
class ModelSwitching(Strategy):
    accepts_directives = frozenset({"modules"})
    requires_directives = frozenset({"modules"})
    provides_hints = frozenset({"modules", "dissimilarity"})
    uses_lora_rank = False   # module ranks come from strategy.options
    """M LoRA modules of configurable ranks; devices train the module(s) the planner subscribes them to."""

    name = "model_switching"
    Options = SwitchingOptions

    @property
    def ranks(self) -> list[int]:
        return [int(r) for r in self.options.module_ranks]

    # -- state ----------------------------------------------------------------------------------
    def init_state(self, tensors: dict[str, torch.Tensor]) -> ServerState:
        """``tensors``: the shared model's initial adapter (only its layer shapes and head are used)."""
        pairs = lora_pairs(tensors)
        if not pairs:
            raise ValueError("model_switching needs a LoRA state (no lora_A/lora_B keys found)")
        head = head_state(tensors)
        out: dict[str, torch.Tensor] = {}
        for m, r in enumerate(self.ranks):
            gen = torch.Generator().manual_seed(int_seed(self.context.seed, "strategy", 1, m))
            for a_key, b_key in pairs.values():
                A0, B0 = tensors[a_key], tensors[b_key]
                n, d = A0.shape[1], B0.shape[0]
                bound = 1.0 / math.sqrt(n)
                A = (torch.rand(r, n, generator=gen, dtype=torch.float64) * 2 - 1) * bound
                out[_prefix(m) + a_key] = A.to(A0.dtype)
                out[_prefix(m) + b_key] = torch.zeros(d, r, dtype=B0.dtype)
            for k, v in head.items():
                out[_prefix(m) + k] = v.clone()
        K = len(self.context.device_ranks)
        return ServerState(out, {"updates": np.zeros(len(self.ranks), dtype=np.int64),
                                 "dissimilarity": np.full(K, np.nan)})

    def module_state(self, server: ServerState, m: int) -> dict[str, torch.Tensor]:
        """Module ``m``'s tensors under their PEFT keys."""
        p = _prefix(m)
        return {k[len(p):]: v for k, v in server.tensors.items() if k.startswith(p)}

    def _task(self, m: int, server: ServerState, device: int, steps: int, seed: int) -> ClientTask:
        return ClientTask(device=device, state=self.module_state(server, m), steps=steps, seed=seed,
                          adapter=module_adapter_name(m), rank=self.ranks[m], memo={"module": int(m)})

    # -- contract -------------------------------------------------------------------------------
    def configure_round(self, rnd: int, server: ServerState, selected: list[int],
                        seeds: dict[int, int], steps: int, plan: Allocation | None = None) -> list[ClientTask]:
        directive = None if plan is None else plan.directives.modules
        if plan is None or directive is None:
            raise ConfigError("strategy.name = 'model_switching': the allocator gave no module subscriptions "
                              "(plan.directives.modules); fix: set allocation.name=model_switching")
        K = len(plan.selected)
        mask = subscriptions(directive.modules, K, len(self.ranks))
        if not np.array_equal(mask.any(axis=1), np.asarray(plan.selected, bool)):
            raise ValueError("plan.selected and plan.directives.modules disagree on who takes part")
        too_many = np.flatnonzero(mask.sum(axis=1) > self.options.max_modules_per_device)
        if too_many.size:
            raise ConfigError(f"strategy.options.max_modules_per_device = {self.options.max_modules_per_device}: "
                              f"device {int(too_many[0])} is subscribed to {int(mask[too_many[0]].sum())} modules; "
                              "fix: raise max_modules_per_device or subscribe fewer modules")
        tasks = []
        for k in selected:
            mods = np.flatnonzero(mask[k])
            for m in mods:
                seed = seeds[k] if len(mods) == 1 else int_seed(seeds[k], "strategy", 2, int(m))
                tasks.append(self._task(int(m), server, k, steps, seed))
        return tasks

    def aggregate(self, rnd: int, server: ServerState, updates: list[ClientUpdate],
                  delivered: set[int]) -> tuple[ServerState, dict[str, Any]]:
        M = len(self.ranks)
        ok = delivered_updates(updates, delivered)
        tensors = dict(server.tensors)
        counts = np.array(server.extra["updates"], dtype=np.int64, copy=True)
        delivered_per_module = [0] * M
        dissim = np.array(server.extra.get("dissimilarity", np.full(len(self.context.device_ranks), np.nan)),
                          dtype=float, copy=True)
        for m in range(M):
            mine = [u for u in ok if u.memo["module"] == m]
            if not mine:
                continue  # nobody delivered module m: it keeps its value
            if len(mine) >= 2:
                dissim[[u.device for u in mine]] = update_dissimilarity(
                    [u.state for u in mine], self.module_state(server, m), [float(u.num_samples) for u in mine])
            avg = fedavg([u.state for u in mine], [float(u.num_samples) for u in mine])
            tensors.update({_prefix(m) + k: v for k, v in avg.items()})
            delivered_per_module[m] = len(mine)
            counts[m] += len(mine)
        subscribed = [sum(1 for u in updates if u.memo["module"] == m) for m in range(M)]
        report = {"aggregated": len(ok), "module_subscribed": subscribed, "module_delivered": delivered_per_module,
                  "modules_trained": int(np.count_nonzero(counts)),
                  "dissimilarity_measured": int(np.isfinite(dissim).sum())}
        return ServerState(tensors, {**server.extra, "updates": counts, "dissimilarity": dissim}), report

    # -- hooks ----------------------------------------------------------------------------------
    def eval_tasks(self, server: ServerState) -> list[ClientTask]:
        mods = range(len(self.ranks))
        if self.options.ensemble == "trained":
            trained = [m for m in mods if server.extra["updates"][m] > 0]
            mods = trained or list(mods)
        return [self._task(m, server, -1, 0, 0) for m in mods]

    def global_task(self, server: ServerState) -> ClientTask:
        """The largest-rank module (what the checkpoint exports as one PEFT adapter)."""
        return self._task(int(np.argmax(self.ranks)), server, -1, 0, 0)

    def planned_bits(self, server: ServerState, num_devices: int) -> tuple[np.ndarray, np.ndarray]:
        """The largest module's bits both ways (an upper bound: the planner computes each
        module's payload itself, ``switching_planner.module_payload_bits``)."""
        bits = max(float(tensor_bits(self.module_state(server, m))) for m in range(len(self.ranks)))
        return np.full(num_devices, bits), np.full(num_devices, bits)

    def planner_hints(self, server: ServerState) -> Hints:
        r"""The module set for the planner: the ranks and each module's exact upload size in bits
        (LoRA factors and head, as :meth:`uplink_bits` counts them); and each device's
        dissimilarity :math:`\delta_k` (module docstring; the prior where never measured)."""
        bits = [float(tensor_bits(self.module_state(server, m))) for m in range(len(self.ranks))]
        raw = np.asarray(server.extra.get("dissimilarity", np.full(len(self.context.device_ranks), np.nan)), float)
        seen = np.isfinite(raw)
        prior = float(raw[seen].mean()) if seen.any() else 0.0
        return Hints(modules=ModuleSetHint(ranks=tuple(self.ranks), payload_bits=np.asarray(bits)),
                     dissimilarity=DissimilarityHint(values=np.where(seen, raw, prior), measured=seen))

    def device_ranks(self, server: ServerState) -> np.ndarray | None:
        """None: a device's rank is the rank of the module it subscribes to, which changes per round
        (logged as ``module_subscribed`` per round)."""
        return None
