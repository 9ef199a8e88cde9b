"""Helpers shared by the heterogeneous-rank strategies: per-layer factors, the head, device tasks.

A LoRA state is ``dict[str, Tensor]`` with PEFT's saved keys (``airtune.lora.adapters``): per
adapted layer ``<prefix>.lora_A.weight`` (r, n) and ``<prefix>.lora_B.weight`` (d, r), plus the
task head. These helpers split such states into per-layer factor lists for the pure rules of
``airtune.lora.ops`` / ``ops_hetero`` and put the results back together; no maths here beyond
FedAvg of the head.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from airtune.lora.adapters import head_keys, lora_pairs, rank_adapter_name
from airtune.lora.ops_hetero import flexlora_redistribute
from airtune.strategies.aggregate import fedavg
from airtune.training.engine import ClientTask, ClientUpdate

Pairs = dict[str, tuple[str, str]]      # layer prefix -> (A key, B key)


@contextlib.contextmanager
def serial_linalg() -> Iterator[None]:
    """Run dense decompositions (SVD) on one thread, then restore the thread count.

    Measured here: a (384, 384) float32 SVD takes 0.02 s on one MKL thread but 1.7-3.8 s on two
    when another process keeps the two cores busy (MKL thread oversubscription); matrices this
    small gain nothing from threading.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def head_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The task-head tensors of a state (everything that is not a LoRA factor)."""
    return {k: state[k] for k in head_keys(state)}


def average_heads(states: Sequence[dict[str, Tensor]], weights: Sequence[float]) -> dict[str, Tensor]:
    """FedAvg of the task heads (data-size weights) [mcmahan2017fedavg]."""
    return fedavg([head_state(s) for s in states], weights)


def factors(states: Sequence[dict[str, Tensor]], a_key: str, b_key: str) -> tuple[list[Tensor], list[Tensor]]:
    """The K factors ``A_k: (r_k, n)`` and ``B_k: (d, r_k)`` of one adapted layer."""
    return [s[a_key] for s in states], [s[b_key] for s in states]


def assemble(pairs: Pairs, layers: dict[str, tuple[Tensor, Tensor]], head: dict[str, Tensor]) -> dict[str, Tensor]:
    """A state from per-layer ``(A, B)`` and the head (keys in ``pairs`` order, then the head)."""
    out: dict[str, Tensor] = {}
    for prefix, (a_key, b_key) in pairs.items():
        A, B = layers[prefix]
        out[a_key], out[b_key] = A.contiguous(), B.contiguous()
    out.update(head)
    return out


def rank_of(state: dict[str, Tensor]) -> int:
    """The LoRA rank of a state (rows of its first A factor)."""
    pairs = lora_pairs(state)
    if not pairs:
        raise ValueError("state has no LoRA factors")
    a_key, _ = next(iter(pairs.values()))
    return int(state[a_key].shape[0])


def rank_task(device: int, rank: int, state: dict[str, Tensor], steps: int, seed: int,
              **fields: Any) -> ClientTask:
    """A task that trains the adapter of rank ``rank`` (created on demand by the engine); other
    :class:`ClientTask` fields (``regularizer``, ``freeze``, ``base_delta``, ``memo`` ...) pass through."""
    return ClientTask(device=device, state=state, steps=steps, seed=seed, adapter=rank_adapter_name(rank),
                      rank=int(rank), **fields)


def data_weights(updates: Sequence[ClientUpdate]) -> list[float]:
    """FedAvg weights: the devices' local data sizes."""
    return [float(u.num_samples) for u in updates]


def delta_export(pairs: Pairs, deltas: dict[str, Tensor], head: dict[str, Tensor], alpha: float,
                 max_rank: int | None = None) -> tuple[int, dict[str, Tensor]]:
    """A full-size global update ``delta: (d, n)`` per layer as one PEFT LoRA adapter.

    The rank is ``R = max_l min(d_l, n_l[, max_rank])``; each layer is the rank-``R`` truncated
    SVD of its delta (:func:`~airtune.lora.ops_hetero.flexlora_redistribute`, scale alpha / R
    divided out), exact whenever ``rank(delta_l) <= R`` (always when ``max_rank`` is None or
    bounds the rank, e.g. the number of stacked components).
    """
    caps = [min(d.shape) for d in deltas.values()]
    R = max(caps) if max_rank is None else max(1, min(max(caps), int(max_rank)))
    with serial_linalg():
        layers = {p: flexlora_redistribute(deltas[p], R, alpha / R) for p in pairs}
    return R, assemble(pairs, layers, head)


def zeros_like_pairs(pairs: Pairs, template: dict[str, Tensor], rank: int) -> dict[str, tuple[Tensor, Tensor]]:
    """Zero factors of rank ``rank`` with the layer shapes of ``template`` (a contribution of 0)."""
    out = {}
    for prefix, (a_key, b_key) in pairs.items():
        n, d = template[a_key].shape[1], template[b_key].shape[0]
        out[prefix] = (torch.zeros(rank, n, dtype=template[a_key].dtype),
                       torch.zeros(d, rank, dtype=template[b_key].dtype))
    return out
