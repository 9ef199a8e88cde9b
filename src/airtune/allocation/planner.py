r"""The per-round planner contract: what the runner tells an allocator, and what it hears back.

The runner calls, every round (see ``experiment/runner.py``)::

    plan = planner.plan(inputs)              # before training: who, how much bandwidth, power, directives
    ...training, radio round...
    report = planner.observe(inputs, plan, outcome)   # after the round: update queues, return log entries

A planner may keep state across rounds (Lyapunov virtual queues, switching multipliers); it
exposes it through ``state_dict`` / ``load_state_dict`` so that a checkpointed run resumes
exactly. ``plan.directives`` carries typed directives for the strategy (a keep ratio per
device, module subscriptions ...; ``allocation/exchange.py``): the strategy reads them in
``configure_round(..., plan=plan)``. The strategy's typed hints reach the planner as
``inputs.hints``.

Stateless allocators stay plain functions with the common keyword signature of
``allocation/baselines.py``; :func:`make_planner` wraps them in :class:`FunctionPlanner`.
A planner class is registered in ``ALLOCATORS`` like a function and is recognised by being a
subclass of :class:`Planner`. Its options come from ``allocation.options`` and are validated
by its own pydantic ``Options`` model (one line per problem, like ``strategy.options``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from airtune.allocation.exchange import Hints
from airtune.allocation.result import Allocation
from airtune.wireless.cost import comm_latency_s, device_latency_s, round_latency_s
from airtune.wireless.link import LinkModel

__all__ = ["PlannerContext", "RoundInputs", "RoundOutcome", "Planner", "FunctionPlanner", "make_planner",
           "planned_downlink_s", "planned_latency_s"]


def planned_downlink_s(link: LinkModel, inputs: RoundInputs, num_scheduled: int) -> np.ndarray:
    """Downlink time (K,) of each device if ``num_scheduled`` are scheduled (``LinkModel`` downlink)."""
    rate = link.downlink_rate_if_bps(num_scheduled, inputs.channel_gain)
    return comm_latency_s(np.asarray(inputs.downlink_bits, float), rate)


def planned_latency_s(link: LinkModel, inputs: RoundInputs, selected: npt.ArrayLike, bandwidth_hz: npt.ArrayLike,
                      power_w: npt.ArrayLike) -> tuple[np.ndarray, float]:
    """Per-device latency (K,; 0 where idle) and round latency a planner expects for a plan.

    The runner's definition (``wireless.cost.device_latency_s`` / ``round_latency_s``) with the
    link's charged uplink rate and downlink, on the channel the planner sees; equal to what the
    runner charges when the planner has instantaneous CSI (tested).
    """
    sel = np.asarray(selected, bool)
    n = int(sel.sum())
    up = comm_latency_s(np.asarray(inputs.uplink_bits, float),
                        np.where(sel, link.uplink_rate_bps(bandwidth_hz, power_w, inputs.channel_gain,
                                                           inputs.uplink_bits), 1.0))
    server = n * np.asarray(inputs.server_s_alone, float) * np.ones(sel.shape)
    lat = np.where(sel, device_latency_s(inputs.compute_s, server, up, planned_downlink_s(link, inputs, n)), 0.0)
    return lat, round_latency_s(lat, sel)


class NoPlannerOptions(BaseModel):
    """An allocator without options."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, eq=False)
class PlannerContext:
    """Run constants a planner may need (built once by the runner).

    Attributes
    ----------
    num_devices : int
        :math:`K`.
    devices_per_round : int
        ``devices_per_round`` of the config (a target or cap; planners may choose fewer or more).
    rounds : int
        Planned number of rounds :math:`T`.
    cpu_freq_hz, max_power_w : numpy.ndarray, shape (K,)
        Device profiles.
    kappa : float
        Effective switched capacitance.
    data_sizes : numpy.ndarray, shape (K,)
        Local dataset size :math:`D_k` of every device.
    link : LinkModel
        The radio link (``wireless/link.py``), built once by the runner: noise, bandwidths, the
        charged rate, the success probability of the delivery event, the downlink. Planners use
        it and never the raw ``wireless`` config. ``noise_psd_w_per_hz`` (:math:`N_0`) and
        ``total_bandwidth_hz`` (uplink :math:`B`) are read from it.
    lora_dims : list of (d_in, d_out)
        Shapes of the adapted matrices (empty without LoRA), for payload models.
    seed : int
        Run seed.
    scheduler : str
        ``allocation.scheduler`` (baselines and fallback rules).
    label_counts : numpy.ndarray, shape (K, C), optional
        Training examples of each class on each device (class-balanced scheduling); None where
        the caller has no labels.
    """

    num_devices: int
    devices_per_round: int
    rounds: int
    cpu_freq_hz: np.ndarray
    max_power_w: np.ndarray
    kappa: float
    data_sizes: np.ndarray
    link: LinkModel
    lora_dims: list[tuple[int, int]]
    seed: int
    scheduler: str
    label_counts: np.ndarray | None = None

    @property
    def noise_psd_w_per_hz(self) -> float:
        return self.link.noise_psd_w_per_hz

    @property
    def total_bandwidth_hz(self) -> float:
        return self.link.uplink_bandwidth_hz


@dataclass(frozen=True, eq=False)
class RoundInputs:
    r"""What is known before round :math:`t` starts (the causal information of papers.md §1.6/§2.6/§3.6).

    Attributes
    ----------
    round_idx : int
        Round :math:`t`.
    rng : numpy.random.Generator
        The round's scheduling stream.
    channel_gain : numpy.ndarray, shape (K,)
        Channel power gain :math:`h_k(t)` as the planner sees it (``LinkModel.planner_gain``):
        path loss x this round's fading with instantaneous CSI, the path loss (the mean) with
        statistical CSI.
    distance_m : numpy.ndarray, shape (K,)
        Device distances.
    uplink_bits : numpy.ndarray, shape (K,)
        Planned uplink payload :math:`S_k` in bits if device :math:`k` is scheduled (strategy's
        ``planned_bits``; for split learning it includes the activation traffic of the round).
    downlink_bits : numpy.ndarray, shape (K,)
        Planned downlink payload in bits.
    compute_s : numpy.ndarray, shape (K,)
        Local compute latency of the round if scheduled (device-side modules only).
    compute_energy_j : numpy.ndarray, shape (K,)
        Local compute energy of the round if scheduled.
    server_s_alone : numpy.ndarray, shape (K,)
        Edge-server compute time of the device's round if it had the server alone (split
        learning; 0 otherwise); with :math:`N` scheduled it is :math:`N` times this
        (``wireless.cost.server_compute_s``).
    hints : Hints
        What the strategy tells the planner before the round (``Strategy.planner_hints``), e.g.
        SOFT's payload table and truncation-error curve for TSFA; none by default.
    """

    round_idx: int
    rng: np.random.Generator
    channel_gain: np.ndarray
    distance_m: np.ndarray
    uplink_bits: np.ndarray
    downlink_bits: np.ndarray
    compute_s: np.ndarray
    compute_energy_j: np.ndarray
    hints: Hints = field(default_factory=Hints)
    server_s_alone: np.ndarray | float = 0.0


@dataclass(frozen=True, eq=False)
class RoundOutcome:
    """What happened in the round (measured by the runner after training and the radio round).

    All arrays have shape (K,); zero for devices not scheduled.
    """

    delivered: np.ndarray        # bool: scheduled and the upload survived
    success_prob: np.ndarray
    energy_j: np.ndarray         # compute + transmit energy of the round
    latency_s: np.ndarray        # compute + communication latency of the round
    uplink_bits: np.ndarray      # measured payloads
    round_latency_s: float


class Planner:
    """Base class of stateful allocators. Subclasses implement :meth:`plan`; the rest is optional."""

    Options: ClassVar[type[BaseModel]] = NoPlannerOptions
    options: BaseModel          # an instance of Options (subclasses narrow the annotation)
    context: PlannerContext
    # What the planner exchanges with a strategy (checked by ``airtune validate``):
    # (kinds are field names of exchange.Directives / exchange.Hints)
    directives: ClassVar[frozenset[str]] = frozenset()   # plan.directives kinds it sets for the strategy
    needs_hints: ClassVar[frozenset[str]] = frozenset()  # RoundInputs.hints kinds it cannot plan without
    uses_scheduler: ClassVar[bool] = True                # reads allocation.scheduler (else a warning)

    def __init__(self, options: dict[str, Any] | None, context: PlannerContext) -> None:
        from airtune.strategies.base import parse_options  # late: strategies import torch

        self.options = parse_options(self.Options, options or {}, type(self).__name__,
                                     section="allocation.options")
        self.check_link(context.link)
        self.context = context

    @classmethod
    def check_link(cls, link: LinkModel) -> None:
        """Raise a one-line ConfigError if this planner cannot model ``link`` (also run by
        ``airtune validate``); every link by default."""

    def plan(self, inputs: RoundInputs) -> Allocation:
        raise NotImplementedError

    def observe(self, inputs: RoundInputs, plan: Allocation, outcome: RoundOutcome) -> dict[str, Any]:
        """Update internal state after the round; return scalars to log in ``metrics.jsonl``."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state but the checkpoint holds {sorted(state)}")


class FunctionPlanner(Planner):
    """A stateless allocator function with the common keyword signature (``allocation/baselines.py``)."""

    def __init__(self, fn: Callable[..., Allocation], options: dict[str, Any] | None,
                 context: PlannerContext) -> None:
        if options:
            from airtune.errors import ConfigError
            raise ConfigError(f"allocation.options = {options!r}: this allocator takes no options; fix: remove them")
        self.fn = fn
        self.options = NoPlannerOptions()
        self.context = context

    def plan(self, inputs: RoundInputs) -> Allocation:
        c = self.context
        return self.fn(rng=inputs.rng, round_idx=inputs.round_idx, channel_gain=inputs.channel_gain,
                       max_power_w=c.max_power_w, total_bandwidth_hz=c.total_bandwidth_hz,
                       n=c.devices_per_round, scheduler=c.scheduler)


def make_planner(obj: Any, options: dict[str, Any] | None, context: PlannerContext) -> Planner:
    """A :class:`Planner` from a registered allocator (a Planner subclass or a function)."""
    if isinstance(obj, type) and issubclass(obj, Planner):
        return obj(options, context)
    return FunctionPlanner(obj, options, context)


def allocation_log(plan: Allocation) -> dict[str, Any]:
    """The solver's own diagnostics for ``metrics.jsonl`` (objective, iterations, convergence)."""
    return {"alloc_objective": plan.objective, "alloc_iterations": plan.iterations,
            "alloc_converged": plan.converged, "alloc_selected": plan.num_selected}
