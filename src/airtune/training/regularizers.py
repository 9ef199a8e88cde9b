"""Named, parametrised training regularisers: what a task asks the device to add to its loss.

A :class:`~airtune.training.engine.ClientTask` carries a :class:`RegularizerSpec` (a registered
name and numeric parameters), never a Python callable, so that a task can be written down and
sent to another process (Flower, ``airtune.flower``) and rebuilt there. The callable is built
from the ``REGULARIZERS`` registry where the task runs. Strategies register their own
regularisers (SOFT's orthogonality penalty, HetLoRA's tail penalty) in ``strategies/``; a
plugin registers one the same way (``docs/extending.md``).

A registered regulariser is a class (or function) ``factory(**params)`` returning a callable
``f(model) -> scalar Tensor`` that is added to the task loss at every local step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from airtune.registry import REGULARIZERS

__all__ = ["RegularizerSpec"]


@dataclass(frozen=True)
class RegularizerSpec:
    """A registered regulariser's name and its numeric parameters (sorted, finite floats)."""

    name: str
    params: tuple[tuple[str, float], ...] = ()

    @classmethod
    def of(cls, name: str, **params: float) -> RegularizerSpec:
        """``RegularizerSpec.of("soft_orthogonality", weight=0.1)``."""
        return cls(name, tuple(sorted((str(k), float(v)) for k, v in params.items())))

    def __post_init__(self) -> None:
        bad = [k for k, v in self.params if not math.isfinite(v)]
        if bad:
            raise ValueError(f"regulariser '{self.name}': parameters {bad} are not finite")

    def as_dict(self) -> Mapping[str, float]:
        return dict(self.params)

    def build(self) -> Callable[[nn.Module], torch.Tensor]:
        """The callable added to the loss (looked up in ``REGULARIZERS``; unknown names raise
        the registry's one-line error listing the registered ones)."""
        factory = REGULARIZERS.get(self.name)
        return factory(**self.as_dict())
