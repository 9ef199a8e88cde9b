"""The multi-device engine: one frozen base model in memory serves every simulated device.

A device's state is only its trainable tensors (LoRA factors and task head, or all weights for
full fine-tuning). For each scheduled device the engine writes that device's starting state
into the shared model, runs the reference loop of ``training/local.py`` on the device's own
batches, and reads the result back. Nothing is rebuilt per device update; this is the main
difference from frameworks that construct a PEFT model inside every client's ``fit``
(measured in ``benchmarks/engine.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

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
from airtune.training.loss import label_log_prior
from airtune.training.regularizers import RegularizerSpec
from airtune.training.split_loop import LinkTraffic

# JSON scalars: what a strategy may note on a task for itself (returned in the update).
Memo = Mapping[str, int | float | str | bool | None]


def _check_memo(memo: Mapping[str, object], owner: str) -> dict[str, int | float | str | bool | None]:
    out: dict[str, int | float | str | bool | None] = {}
    for k, v in memo.items():
        if isinstance(v, np.generic):
            v = v.item()
        if not (v is None or isinstance(v, (bool, int, float, str))) or not isinstance(k, str):
            raise TypeError(f"{owner}.memo[{k!r}] = {type(v).__name__}: a memo holds str keys and JSON scalars only "
                            "(tensors go in state/receive/base_delta)")
        out[k] = v
    return out


@dataclass(frozen=True)
class ClientTask:
    """What one scheduled device trains this round: typed, and serialisable field by field
    (tensors, tuples of names, JSON scalars, a :class:`RegularizerSpec`; ``airtune.flower``).

    The engine acts on every field but ``receive`` and ``memo``; a task with only the first four
    trains the single active adapter.

    ``adapter`` (str) and ``rank`` (int)
        Activate this LoRA adapter (heterogeneous ranks: one adapter per rank on the shared base
        model), creating it with ``rank`` if missing. Only its factors and head train.
    ``freeze`` (tuple of str)
        Factors of the active adapter that stay frozen, e.g. ``("lora_A",)`` (FFA-LoRA).
    ``base_delta`` (dict prefix -> (d, n) Tensor)
        Offsets added to the pre-trained weights of the adapted layers for this task
        (FLoRA's merged updates, FlexLoRA's full-size global update at evaluation). None: the
        pre-trained weights. Applied only when it changes (compared by identity).
    ``loop`` (``"local"`` | ``"split"``) and ``downlink`` (``"tokens"`` | ``"pooled"``)
        ``split``: train with the split loop of ``training/split_loop.py`` (split federated
        LoRA): the head on the device, the LoRA factors on the server; the update then carries
        the measured link traffic (``ClientUpdate.traffic``).
    ``chain`` (tuple of str)
        Keys of the state that start from the *previous* task's trained values in the same
        ``run`` call instead of ``state`` (SFL-V2: one server-side LoRA updated device after
        device); the first task of the call uses its own ``state``.
    ``regularizer``
        Added to the loss at every step (``training/regularizers.py``).
    ``receive``
        Tensors the device receives besides ``state`` (FLoRA's stacked update, from which it
        forms ``base_delta``); charged on the downlink by the strategy, not read by the engine.
    ``memo``
        The strategy's own notes (JSON scalars), returned unchanged in the update.
    ``lr_scale``
        Factor on the local learning rates this round (``train.lr_schedule``; set by the runner,
        ``training/schedule.py``).
    """

    device: int
    state: dict[str, torch.Tensor]          # starting trainable tensors (downlinked)
    steps: int
    seed: int                                # batch order and dropout of this update
    adapter: str | None = None
    rank: int | None = None
    freeze: tuple[str, ...] = ()
    base_delta: dict[str, torch.Tensor] | None = None
    loop: Literal["local", "split"] = "local"
    downlink: Literal["tokens", "pooled"] = "tokens"
    chain: tuple[str, ...] = ()
    regularizer: RegularizerSpec | None = None
    receive: dict[str, torch.Tensor] = field(default_factory=dict)
    memo: Memo = field(default_factory=dict)
    lr_scale: float = 1.0                    # multiplies the local learning rates (train.lr_schedule)

    def __post_init__(self) -> None:
        object.__setattr__(self, "memo", _check_memo(self.memo, "ClientTask"))
        object.__setattr__(self, "lr_scale", float(self.lr_scale))
        object.__setattr__(self, "freeze", tuple(self.freeze))
        object.__setattr__(self, "chain", tuple(self.chain))
        if self.rank is not None:
            object.__setattr__(self, "rank", int(self.rank))


@dataclass(frozen=True)
class ClientUpdate:
    """What one device produced: its trained tensors and the statistics of its local run."""

    device: int
    state: dict[str, torch.Tensor]
    num_samples: int                          # size of the device's local dataset
    train_loss: float
    memo: Memo = field(default_factory=dict)  # the task's memo, unchanged
    traffic: LinkTraffic | None = None        # split loop: bits that crossed the device-server link

    def __post_init__(self) -> None:
        object.__setattr__(self, "memo", _check_memo(self.memo, "ClientUpdate"))


def device_batches(data: TokenizedDataset, indices: np.ndarray, steps: int, batch_size: int,
                   rng: np.random.Generator, group_by_length: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """``steps`` mini-batches drawn without replacement from the device's data, reshuffled per epoch.

    ``group_by_length`` (``train.batching: length_grouped``): the round's ``steps x batch``
    examples are drawn exactly as without it, then sorted by length into the ``steps`` batches,
    which are visited in a random order. The round trains on the same examples with less
    padding (on SST-2 with 5 x 16 examples, 1.9x fewer padded tokens), the idea of Hugging Face
    Trainer's ``group_by_length``; our choice is to group within one round, so no example moves
    to another round.
    """
    order = np.empty(0, dtype=np.int64)
    bs = min(batch_size, len(indices))
    takes = []
    for _ in range(steps):
        if len(order) < bs:
            order = np.concatenate([order, rng.permutation(indices)])
        take, order = order[:bs], order[bs:]
        if not group_by_length:
            yield collate(data, take)
        else:
            takes.append(take)
    if group_by_length and takes:
        pool = np.concatenate(takes)
        pool = pool[np.argsort(data.lengths[torch.as_tensor(pool)].numpy(), kind="stable")]
        for i in rng.permutation(len(takes)):
            yield collate(data, pool[i * bs:(i + 1) * bs])


class Engine:
    """Runs client tasks on one shared model, sequentially (2 CPU cores: training is compute-bound).

    What it does with each field of a task: see :class:`ClientTask`.
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
        self._num_classes = int(data.labels.max()) + 1 if len(data) else 1

    def log_prior(self, device: int) -> torch.Tensor | None:
        """The device's log label frequencies when ``optim.loss`` is ``logit_adjusted``, else None.

        Computed from the device's own labels only (``training/loss.label_log_prior``)."""
        if self.optim.loss != "logit_adjusted":
            return None
        idx = torch.as_tensor(self.partitions[device], dtype=torch.long)
        return label_log_prior(self.data.labels[idx], self._num_classes)

    def load_task(self, task: ClientTask) -> None:
        """Write a task's starting point into the shared model: adapter, base offset, state, freezing."""
        if task.adapter is not None:
            use_adapter(self.model, task.adapter, task.rank)
        self._apply_base_delta(task.base_delta)
        load_trainable_state(self.model, task.state)
        if self._peft:
            freeze_factors(self.model, task.freeze)

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
        batches = (to_device(b, dev) for b in device_batches(self.data, idx, task.steps, self.batch_size, rng,
                                                                self.optim.batching == "length_grouped"))
        traffic = None
        if task.loop == "split":
            losses, traffic = self._run_split(task, params, batches)
        else:
            opt = make_optimizer(params, self.optim, lambda k: k in self.head_keys, task.lr_scale)
            extra = None if task.regularizer is None else task.regularizer.build()
            losses = train_steps(self.model, batches, opt, self.optim, extra, self.log_prior(task.device))
        state = {k: v.cpu() for k, v in trainable_state(self.model).items()}   # server state lives on the CPU
        return ClientUpdate(task.device, state, len(idx), float(np.mean(losses)), task.memo, traffic)

    def _run_split(self, task: ClientTask, params, batches):
        """Split federated LoRA: head optimiser on the device, LoRA optimiser on the server."""
        from airtune.lora.split import split_model
        from airtune.training.split_loop import split_train_steps

        if self.optim.proximal_mu > 0:
            raise ValueError("the split loop does not support train.proximal_mu (FedProx); fix: set it to 0")
        if task.regularizer is not None:
            raise ValueError("the split loop does not support a regularizer (the server cannot add a "
                             "regulariser over the device's head, nor the device over the LoRA)")
        device, server = split_model(self.model, task.downlink)
        head = {k: p for k, p in params.items() if k in self.head_keys}
        lora = {k: p for k, p in params.items() if k not in self.head_keys}
        device_opt = make_optimizer(head, self.optim, lambda k: True, task.lr_scale)
        server_opt = make_optimizer(lora, self.optim, lambda k: False, task.lr_scale)
        self.model.train()
        return split_train_steps(device, server, batches, device_opt, server_opt, self.optim,
                                 self.log_prior(task.device))

    def run(self, tasks: list[ClientTask]) -> list[ClientUpdate]:
        out: list[ClientUpdate] = []
        for t in tasks:
            if t.chain and out:
                t = replace(t, state={**t.state, **{k: out[-1].state[k] for k in t.chain}})
            out.append(self.run_one(t))
        return out
