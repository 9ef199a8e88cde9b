"""The Strategy contract: configure -> train -> aggregate, with state passed explicitly.

``configure_round(rnd, server, selected, seeds) -> list[ClientTask]`` says what each scheduled
device trains; ``aggregate(rnd, server, updates, delivered) -> (ServerState, report)`` returns a
*new* server state built only from the updates that survived the channel, plus a dict of
per-round diagnostics that the runner writes into ``metrics.jsonl``. A strategy holds no hidden
mutable state, so the same object runs under the in-process engine or a Flower ServerApp.

Run constants that a strategy may need (every device's LoRA rank, the LoRA hyper-parameters, the
run seed) come in a :class:`StrategyContext` passed to the constructor:
``Strategy(options, context=...)``; ``Strategy(options)`` alone still builds a strategy (config
validation does), and strategies that need the context raise when it is missing.

Besides the contract, three hooks let the runner stay strategy-agnostic:
``global_task(server)`` (what to load into the shared model to evaluate the global model),
``export_adapter(server)`` (the checkpoint's PEFT adapter when it is not an adapter that devices
train) and ``device_ranks(server)`` (current rank of every device, logged per device).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from airtune.allocation.exchange import Hints
from airtune.allocation.result import Allocation
from airtune.errors import ConfigError
from airtune.lora.adapters import LoraSpec
from airtune.training.engine import ClientTask, ClientUpdate


@dataclass(frozen=True)
class ServerState:
    """The global model state: trainable tensors plus strategy-owned extras (picklable)."""

    tensors: dict[str, torch.Tensor]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class StrategyContext:
    """Constants of a run that a strategy may need (built once by ``experiment/setup.py``).

    Attributes
    ----------
    device_ranks : numpy.ndarray of int, shape (K,)
        LoRA rank of every device (``lora.device_ranks``; all ``lora.rank`` when uniform).
    lora : LoraSpec
        Shared LoRA hyper-parameters; ``lora.alpha`` gives each device's scale alpha / r_k.
    seed : int
        Run seed (strategies derive their own streams with ``seeds.int_seed(seed, "strategy", ...)``).
    profile : ModelProfile, optional
        Parameter counts of the model by module group and the mean tokens per example
        (``models/profile.py``; split learning's device compute share and traffic estimate).
    samples_per_round : numpy.ndarray, shape (K,), optional
        Training samples a device processes in a round (local steps x its batch size).
    """

    device_ranks: np.ndarray
    lora: LoraSpec
    seed: int = 0
    profile: Any = None
    samples_per_round: np.ndarray | None = None

    def __post_init__(self) -> None:
        ranks = np.array(self.device_ranks, dtype=np.int64)
        if ranks.ndim != 1 or ranks.size == 0 or (ranks < 1).any():
            raise ValueError(f"device_ranks must be a non-empty (K,) array of ranks >= 1; got {ranks}")
        ranks.setflags(write=False)
        object.__setattr__(self, "device_ranks", ranks)

    @property
    def r_max(self) -> int:
        return int(self.device_ranks.max())

    def scale(self, rank: int) -> float:
        """LoRA scale alpha / rank of a device of rank ``rank``."""
        return float(self.lora.alpha) / int(rank)


class NoOptions(BaseModel):
    """A strategy without options."""

    model_config = ConfigDict(extra="forbid")


def tensor_bits(tensors: dict[str, torch.Tensor]) -> int:
    """Payload size in bits of the tensors as sent (numel x dtype width)."""
    return int(sum(t.numel() * t.element_size() * 8 for t in tensors.values()))


class Strategy:
    """Base class; subclasses override ``aggregate`` and, where they send less, the payload hooks."""

    name: ClassVar[str] = "base"
    uses_lora: ClassVar[bool] = True
    supports_heterogeneous_ranks: ClassVar[bool] = False   # devices may train different ranks
    # What the strategy exchanges with a planner (checked by ``airtune validate``, ``experiment/validate.py``):
    # (kinds are field names of allocation.exchange.Directives / Hints)
    accepts_directives: ClassVar[frozenset[str]] = frozenset()   # plan.directives kinds it reads
    requires_directives: ClassVar[frozenset[str]] = frozenset()  # plan.directives kinds it cannot run without
    provides_hints: ClassVar[frozenset[str]] = frozenset()       # planner_hints kinds it supplies
    uses_lora_rank: ClassVar[bool] = True                        # reads lora.rank (else a warning)
    supports_server_optimizer: ClassVar[bool] = True  # its aggregate is a parameter step (strategies/server_opt.py)
    # The uplink and downlink bits follow from the task alone (payload shapes fixed before training),
    # so the runner may price the round first and skip updates the channel loses (train.skip_lost_updates).
    bits_known_before_training: ClassVar[bool] = False
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, options: dict[str, Any] | None = None, context: StrategyContext | None = None) -> None:
        self.options = parse_options(self.Options, options or {}, self.name)
        self._context = context
        if context is not None and self.uses_lora and not self.supports_heterogeneous_ranks:
            ranks = sorted({int(r) for r in context.device_ranks})
            if ranks != [context.lora.rank]:
                raise ConfigError(
                    f"lora.device_ranks: strategy '{self.name}' trains one shared rank but the devices have "
                    f"ranks {ranks}; fix: set lora.device_ranks=uniform_rank, or choose a heterogeneous-rank "
                    "strategy (hetlora, flexlora, ffa_lora, flora)")

    @property
    def context(self) -> StrategyContext:
        if self._context is None:
            raise ConfigError(f"strategy '{self.name}' needs the run context (device ranks, LoRA spec, seed); "
                              f"fix: build it as {type(self).__name__}(options, context=StrategyContext(...))")
        return self._context

    # -- the contract -------------------------------------------------------------------------
    def init_state(self, tensors: dict[str, torch.Tensor]) -> ServerState:
        return ServerState({k: v.clone() for k, v in tensors.items()})

    def configure_round(self, rnd: int, server: ServerState, selected: list[int],
                        seeds: dict[int, int], steps: int, plan: Allocation | None = None) -> list[ClientTask]:
        """``plan`` is the round's :class:`~airtune.allocation.result.Allocation`; its typed
        ``directives`` may direct the strategy (keep ratios, module subscriptions)."""
        return [ClientTask(device=k, state=server.tensors, steps=steps, seed=seeds[k]) for k in selected]

    def aggregate(self, rnd: int, server: ServerState, updates: list[ClientUpdate],
                  delivered: set[int]) -> tuple[ServerState, dict[str, Any]]:
        raise NotImplementedError

    # -- hooks for the runner ------------------------------------------------------------------
    def global_task(self, server: ServerState) -> ClientTask:
        """What to load into the shared model (``Engine.load_task``) to evaluate the global model."""
        return ClientTask(device=-1, state=server.tensors, steps=0, seed=0)

    def export_adapter(self, server: ServerState) -> tuple[int, dict[str, torch.Tensor]] | None:
        """``(rank, PEFT-keyed state)`` of the global model as one LoRA adapter, when it is not the
        adapter that ``global_task`` loads; None: the checkpoint saves the adapter ``global_task`` loads."""
        return None

    def eval_tasks(self, server: ServerState) -> list[ClientTask]:
        """Models whose predicted probabilities are averaged at evaluation (uniform ensemble,
        papers.md §3 eq. 3); one model by default."""
        return [self.global_task(server)]

    def device_compute_fraction(self) -> float:
        """Share of a training sample's FLOPs computed on the device (1.0; split learning less)."""
        return 1.0

    def server_compute_fraction(self) -> float:
        """Share of a training sample's FLOPs computed on the edge server for the device (0.0;
        split learning: the encoder), priced at ``wireless.server_flops_per_s``."""
        return 0.0

    def planned_bits(self, server: ServerState, num_devices: int) -> tuple[np.ndarray, np.ndarray]:
        """Uplink and downlink bits, (K,) each, that a device would move if scheduled this round
        (what an allocator plans with, before training); by default the global state both ways."""
        bits = float(tensor_bits(server.tensors))
        return np.full(num_devices, bits), np.full(num_devices, bits)

    def planner_hints(self, server: ServerState) -> Hints:
        """Information for the allocator before the round (``RoundInputs.hints``); none by default."""
        return Hints()

    def device_ranks(self, server: ServerState) -> np.ndarray | None:
        """Current LoRA rank of every device, (K,); None without LoRA or without a context."""
        if not self.uses_lora or self._context is None:
            return None
        return self._context.device_ranks

    # -- what crosses the air -----------------------------------------------------------------
    def downlink_payload(self, task: ClientTask) -> dict[str, torch.Tensor]:
        return task.state

    def uplink_payload(self, update: ClientUpdate) -> dict[str, torch.Tensor]:
        return update.state

    def downlink_bits(self, task: ClientTask, update: ClientUpdate) -> int:
        """Bits the server sends the device in the round (the payload; split learning adds the
        per-iteration traffic the update measured)."""
        return tensor_bits(self.downlink_payload(task))

    def uplink_bits(self, update: ClientUpdate) -> int:
        """Bits the device sends in the round (the payload; sparsified uploads add index bits)."""
        return tensor_bits(self.uplink_payload(update))

    def bits_before_training(self, task: ClientTask) -> tuple[int, int]:
        """``(uplink, downlink)`` bits of ``task``'s device, known before it trains.

        Only for strategies with ``bits_known_before_training``: their payloads have the shapes
        of the task's state, so an update stand-in holding that state prices exactly what
        :meth:`uplink_bits` and :meth:`downlink_bits` charge the trained update (checked per
        strategy in tests/experiment/test_skip_lost.py).
        """
        if not self.bits_known_before_training:
            raise ValueError(f"strategy '{self.name}' charges bits that depend on the trained update; "
                             "fix: train every scheduled device (train.skip_lost_updates=false)")
        stand_in = ClientUpdate(task.device, task.state, 0, 0.0, task.memo)
        return self.uplink_bits(stand_in), self.downlink_bits(task, stand_in)


def parse_options(model: type[BaseModel], options: dict[str, Any], strategy: str,
                  section: str = "strategy.options") -> BaseModel:
    """Validate ``strategy.options`` (or another ``section``) with its owner's model; one line per problem."""
    try:
        return model(**options)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            val = err.get("input")
            if err["type"] == "extra_forbidden":
                valid = ", ".join(sorted(model.model_fields)) or "none"
                lines.append(f"{section}.{loc}: unknown option for '{strategy}'; fix: remove it (valid options: {valid})")
            else:
                lines.append(f"{section}.{loc} = {val!r}: {err['msg']}; fix: see `airtune ls` / docs for '{strategy}'")
        raise ConfigError("\n".join(lines)) from None


def delivered_updates(updates: list[ClientUpdate], delivered: set[int]) -> list[ClientUpdate]:
    """The updates that survived the channel, in device order."""
    return sorted((u for u in updates if u.device in delivered), key=lambda u: u.device)
