"""Round-level learning-rate schedules: the factor on the devices' local learning rates in round t.

With a constant learning rate the global model keeps moving by about one round's noise until the
last round, so the final accuracy is one draw from the oscillation (docs/design.md "Learning
under label skew"; even a centralised run, IID on one device, swings by +-0.03 at lr 1e-3).
Decaying the local learning rate over rounds is the standard cure in federated optimisation
(Li et al., "On the Convergence of FedAvg on Non-IID Data", ICLR 2020, Theorem 1 needs a
decaying step size; Reddi et al., ICLR 2021, decay client learning rates in their experiments).

For round ``t = 0 .. T-1`` of ``T`` rounds:

- ``constant``: 1;
- ``cosine``: ``(1 + cos(pi t / T)) / 2`` (cosine annealing, Loshchilov & Hutter, "SGDR",
  ICLR 2017, eq. 5 with eta_min = 0 and one period of T rounds);
- ``linear``: ``1 - t / T``.

Our choices: the factor is per round (every local step of round t uses it; each round's local
optimiser starts fresh, as in every strategy here), the head and LoRA learning rates are scaled
alike, and the last round still trains (factor ``> 0``).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Literal

from airtune.training.engine import ClientTask

Schedule = Literal["constant", "cosine", "linear"]


def lr_factor(schedule: Schedule, rnd: int, rounds: int) -> float:
    """The factor of round ``rnd`` (0-based) of ``rounds`` (module docstring)."""
    if rounds < 1 or not 0 <= rnd < rounds:
        raise ValueError(f"round {rnd} of {rounds}: need 0 <= round < rounds and rounds >= 1")
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * rnd / rounds))
    if schedule == "linear":
        return 1.0 - rnd / rounds
    raise ValueError(f"train.lr_schedule = {schedule!r}: unknown; fix: use constant, cosine or linear")


def scheduled(tasks: list[ClientTask], schedule: Schedule, rnd: int, rounds: int) -> list[ClientTask]:
    """The round's tasks with ``lr_scale`` multiplied by the schedule's factor (unchanged when 1)."""
    f = lr_factor(schedule, rnd, rounds)
    return tasks if f == 1.0 else [replace(t, lr_scale=t.lr_scale * f) for t in tasks]
