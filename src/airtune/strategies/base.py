"""The Strategy contract: configure -> train -> aggregate, with state passed explicitly.

``configure_round(rnd, server, selected, seeds) -> list[ClientTask]`` says what each scheduled
device trains; ``aggregate(rnd, server, updates, delivered) -> (ServerState, report)`` returns a
*new* server state built only from the updates that survived the channel, plus a dict of
per-round diagnostics that the runner writes into ``metrics.jsonl``. A strategy holds no hidden
mutable state, so the same object runs under the in-process engine or a Flower ServerApp.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from airtune.errors import ConfigError
from airtune.training.engine import ClientTask, ClientUpdate


@dataclass(frozen=True)
class ServerState:
    """The global model state: trainable tensors plus strategy-owned extras (picklable)."""

    tensors: dict[str, torch.Tensor]
    extra: dict[str, Any] = field(default_factory=dict)


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
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = parse_options(self.Options, options or {}, self.name)

    # -- the contract -------------------------------------------------------------------------
    def init_state(self, tensors: dict[str, torch.Tensor]) -> ServerState:
        return ServerState({k: v.clone() for k, v in tensors.items()})

    def configure_round(self, rnd: int, server: ServerState, selected: list[int],
                        seeds: dict[int, int], steps: int) -> list[ClientTask]:
        return [ClientTask(device=k, state=server.tensors, steps=steps, seed=seeds[k]) for k in selected]

    def aggregate(self, rnd: int, server: ServerState, updates: list[ClientUpdate],
                  delivered: set[int]) -> tuple[ServerState, dict[str, Any]]:
        raise NotImplementedError

    # -- what crosses the air -----------------------------------------------------------------
    def downlink_payload(self, task: ClientTask) -> dict[str, torch.Tensor]:
        return task.state

    def uplink_payload(self, update: ClientUpdate) -> dict[str, torch.Tensor]:
        return update.state


def parse_options(model: type[BaseModel], options: dict[str, Any], strategy: str) -> BaseModel:
    """Validate ``strategy.options`` with the strategy's own model; one line per problem."""
    try:
        return model(**options)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            val = err.get("input")
            if err["type"] == "extra_forbidden":
                valid = ", ".join(sorted(model.model_fields)) or "none"
                lines.append(f"strategy.options.{loc}: unknown option for '{strategy}'; fix: remove it (valid options: {valid})")
            else:
                lines.append(f"strategy.options.{loc} = {val!r}: {err['msg']}; fix: see `airtune ls` / docs for '{strategy}'")
        raise ConfigError("\n".join(lines)) from None


def delivered_updates(updates: list[ClientUpdate], delivered: set[int]) -> list[ClientUpdate]:
    """The updates that survived the channel, in device order."""
    return sorted((u for u in updates if u.device in delivered), key=lambda u: u.device)
