"""The multi-device engine: one frozen base model in memory serves every simulated device.

A device's state is only its trainable tensors (LoRA factors and task head, or all weights for
full fine-tuning). For each scheduled device the engine writes that device's starting state
into the shared model, runs the reference loop of ``training/local.py`` on the device's own
batches, and reads the result back. Nothing is rebuilt per device update; this is the main
difference from frameworks that construct a PEFT model inside every client's ``fit``
(measured in ``benchmarks/engine.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from airtune.data.cache import TokenizedDataset, collate
from airtune.lora.adapters import (
    base_weights,
    freeze_factors,
    is_peft,
    load_trainable_state,
    set_base_weights,
    trainable_params,
    trainable_state,
    use_adapter,
)
from airtune.training.device import to_device
from airtune.training.local import OptimConfig, make_optimizer, train_steps


@dataclass(frozen=True)
class ClientTask:
    """What one scheduled device trains this round."""

    device: int
    state: dict[str, torch.Tensor]          # starting trainable tensors (downlinked)
    steps: int
    seed: int                                # batch order and dropout of this update
    extra_loss: Callable[[nn.Module], torch.Tensor] | None = None
    info: dict = field(default_factory=dict)  # strategy-specific, see Engine.load_task


@dataclass(frozen=True)
class ClientUpdate:
    """What one device produced: its trained tensors and the statistics of its local run."""

    device: int
    state: dict[str, torch.Tensor]
    num_samples: int                          # size of the device's local dataset
    train_loss: float
    info: dict = field(default_factory=dict)


def device_batches(data: TokenizedDataset, indices: np.ndarray, steps: int, batch_size: int,
                   rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
    """``steps`` mini-batches drawn without replacement from the device's data, reshuffled per epoch."""
    order = np.empty(0, dtype=np.int64)
    bs = min(batch_size, len(indices))
    for _ in range(steps):
        if len(order) < bs:
            order = np.concatenate([order, rng.permutation(indices)])
        take, order = order[:bs], order[bs:]
        yield collate(data, take)


class Engine:
    """Runs client tasks on one shared model, sequentially (2 CPU cores: training is compute-bound).

    Keys of ``ClientTask.info`` that the engine acts on (all optional; a task without them runs
    on the single active adapter exactly as before):

    ``adapter`` (str) and ``rank`` (int)
        Activate this LoRA adapter (heterogeneous ranks: one adapter per rank on the shared base
        model), creating it with ``rank`` if missing. Only its factors and head train.
    ``freeze`` (tuple of str)
        Factors of the active adapter that stay frozen, e.g. ``("lora_A",)`` (FFA-LoRA).
    ``base_delta`` (dict prefix -> (d, n) Tensor)
        Offsets added to the pre-trained weights of the adapted layers for this task
        (FLoRA's merged updates, FlexLoRA's full-size global update at evaluation). Absent or
        None: the pre-trained weights. Applied only when it changes (compared by identity).
    ``loop`` (``"split"``) and ``downlink`` (``"tokens"`` | ``"pooled"``)
        Train with the split loop of ``training/split_loop.py`` (split federated LoRA): the
        head on the device, the LoRA factors on the server; the update's ``info`` then carries
        the measured link traffic (``split_uplink_bits``, ``split_downlink_bits``,
        ``split_iterations``).
    ``chain`` (tuple of str)
        Keys of the state that start from the *previous* task's trained values in the same
        ``run`` call instead of ``state`` (SFL-V2: one server-side LoRA updated device after
        device); the first task of the call uses its own ``state``.
    """

    def __init__(self, model: nn.Module, data: TokenizedDataset, partitions: list[np.ndarray],
                 batch_size: int, optim: OptimConfig, head_keys: set[str]) -> None:
        self.model = model
        self.data = data
        self.partitions = partitions
        self.batch_size = batch_size
        self.optim = optim
        self.head_keys = head_keys
        self._peft = is_peft(model)
        self._base0: dict[str, torch.Tensor] | None = None   # pre-trained weights of adapted layers
        self._delta: dict[str, torch.Tensor] | None = None   # offset currently applied to them

    def load_task(self, task: ClientTask) -> None:
        """Write a task's starting point into the shared model: adapter, base offset, state, freezing."""
        info = task.info
        if info.get("adapter") is not None:
            use_adapter(self.model, info["adapter"], info.get("rank"))
        self._apply_base_delta(info.get("base_delta"))
        load_trainable_state(self.model, task.state)
        if self._peft:
            freeze_factors(self.model, info.get("freeze", ()))

    def _apply_base_delta(self, delta: dict[str, torch.Tensor] | None) -> None:
        if delta is self._delta:
            return
        if self._base0 is None:
            if delta is None:
                return
            self._base0 = base_weights(self.model, delta.keys())
        missing = set(delta or ()) - self._base0.keys()
        if missing:
            raise KeyError(f"base_delta for layers without a saved base weight: {sorted(missing)[:3]}")
        delta = delta or {}
        set_base_weights(self.model, {p: w0 + delta[p].to(w0.device, w0.dtype) if p in delta else w0
                                      for p, w0 in self._base0.items()})
        self._delta = delta or None

    def run_one(self, task: ClientTask) -> ClientUpdate:
        self.load_task(task)
        params = trainable_params(self.model)
        rng = np.random.default_rng(task.seed)
        torch.manual_seed(task.seed)  # dropout
        idx = self.partitions[task.device]
        dev = next(self.model.parameters()).device
        batches = (to_device(b, dev) for b in device_batches(self.data, idx, task.steps, self.batch_size, rng))
        info = dict(task.info)
        if info.get("loop") == "split":
            losses, traffic = self._run_split(task, params, batches)
            info.update(traffic.as_info())
        else:
            opt = make_optimizer(params, self.optim, lambda k: k in self.head_keys)
            losses = train_steps(self.model, batches, opt, self.optim, task.extra_loss)
        state = {k: v.cpu() for k, v in trainable_state(self.model).items()}   # server state lives on the CPU
        return ClientUpdate(task.device, state, len(idx), float(np.mean(losses)), info)

    def _run_split(self, task: ClientTask, params, batches):
        """Split federated LoRA: head optimiser on the device, LoRA optimiser on the server."""
        from airtune.lora.split import split_model
        from airtune.training.split_loop import split_train_steps

        if task.extra_loss is not None:
            raise ValueError("the split loop does not support extra_loss (the server cannot add a "
                             "regulariser over the device's head, nor the device over the LoRA)")
        device, server = split_model(self.model, task.info.get("downlink", "tokens"))
        head = {k: p for k, p in params.items() if k in self.head_keys}
        lora = {k: p for k, p in params.items() if k not in self.head_keys}
        device_opt = make_optimizer(head, self.optim, lambda k: True)
        server_opt = make_optimizer(lora, self.optim, lambda k: False)
        self.model.train()
        return split_train_steps(device, server, batches, device_opt, server_opt, self.optim)

    def run(self, tasks: list[ClientTask]) -> list[ClientUpdate]:
        out: list[ClientUpdate] = []
        for t in tasks:
            chain = t.info.get("chain")
            if chain and out:
                t = replace(t, state={**t.state, **{k: out[-1].state[k] for k in chain}})
            out.append(self.run_one(t))
        return out
