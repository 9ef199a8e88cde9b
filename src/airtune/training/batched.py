"""Batched multi-device training on one frozen base model (issue 15).

:class:`BatchedEngine` trains a round's compatible tasks together: one forward/backward pass per
local step serves every device of a chunk. Each device keeps its own LoRA factors and head,
its own micro-batches (drawn exactly as the sequential engine draws them), its own optimiser
state, its own gradient clipping and its own loss.

How (public torch APIs only):

- The devices' trainable tensors are stacked into leaves of shape ``(D, ...)``.
- Every module that owns a trainable tensor must be an ``nn.Linear`` (the LoRA ``A``/``B``
  factors and the head's linear layers). A forward hook on each one replaces its output with
  the per-device product ``x_d W_d^T + b_d``, a batched matmul over the device axis. The
  devices' micro-batches are concatenated along the batch axis (device ``d`` owns rows
  ``d*B .. d*B+b_d``), so the frozen base runs once for all of them.
- Loss: each device's mean cross-entropy over its own rows, summed over devices. The gradient
  of the sum with respect to device ``d``'s slice is device ``d``'s own gradient.
- AdamW (and SGD) act element by element, so one optimiser over the stacked leaves is exactly
  ``D`` independent optimisers. Clipping is applied per device, with ``clip_grad_norm_``'s own
  rule: coefficient ``max_norm / (norm_d + 1e-6)``, capped at 1.

Padding (our choice): micro-batches are right-padded to the chunk's longest sequence, and rows
to the largest micro-batch; padded tokens are masked and padded rows carry no loss. Results
equal the sequential engine's to floating-point tolerance: matmuls of other shapes round
differently (``tests/training/test_batched.py``).

Dropout draws differ from the sequential engine's: one mask over the stacked batch instead of
one per device, seeded by the chunk's first task. The two are equal in distribution; the
equality tests run without dropout.

Tasks that cannot share a pass run sequentially, and the log says so once per reason:

- the split loop and chained tasks (SFL-V2), whose devices depend on each other;
- tasks with a regulariser, which is defined on the model's active adapter;
- non-classification heads and trainable tensors not owned by an ``nn.Linear`` (full
  fine-tuning).

Tasks are grouped by adapter, rank, frozen factors, base offset and step count.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from airtune.data.cache import TokenizedDataset
from airtune.lora.adapters import state_params
from airtune.training.device import to_device
from airtune.training.engine import ClientTask, ClientUpdate, Engine, device_batches
from airtune.training.local import OptimConfig, make_optimizer, precision_context, proximal_term
from airtune.training.loss import local_loss

log = logging.getLogger(__name__)

__all__ = ["BatchedEngine", "pad_and_stack", "per_device_clip_"]


def pad_and_stack(batches: list[dict[str, torch.Tensor]], pad_id: int = 0) -> tuple[dict[str, torch.Tensor], int]:
    """Concatenate per-device micro-batches along the batch axis, each padded to ``(B, L)``.

    Returns the stacked inputs (``labels`` padded with -100) and ``B``, the rows per device.
    """
    rows = max(int(b["input_ids"].shape[0]) for b in batches)
    length = max(int(b["input_ids"].shape[1]) for b in batches)
    out: dict[str, list[torch.Tensor]] = {}
    for b in batches:
        n, l = b["input_ids"].shape
        for key, t in b.items():
            if key == "labels":
                fill = torch.full((rows,), -100, dtype=t.dtype)
                fill[:n] = t
            else:
                value = pad_id if key == "input_ids" else 0
                fill = torch.full((rows, length), value, dtype=t.dtype)
                fill[:n, :l] = t
            out.setdefault(key, []).append(fill)
    return {k: torch.cat(v) for k, v in out.items()}, rows


def per_device_clip_(grads: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Clip stacked gradients ``(D, ...)`` in place per device, as ``clip_grad_norm_`` clips one
    device's gradients; returns the per-device norms before clipping, shape (D,)."""
    per_param = torch.stack([torch.linalg.vector_norm(g.flatten(1), 2.0, dim=1) for g in grads])   # (P, D)
    norms = torch.linalg.vector_norm(per_param, 2.0, dim=0)                                          # (D,)
    coef = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))).to(g.dtype))
    return norms


@dataclass(frozen=True)
class _Owner:
    """A trainable tensor's owning linear layer and which of its tensors it is."""

    module: nn.Linear
    attr: str   # "weight" or "bias"


class BatchedEngine(Engine):
    """:class:`~airtune.training.engine.Engine` that trains compatible tasks in one pass per step.

    ``max_devices`` bounds a chunk (memory); the rest of the contract is the sequential
    engine's, and so are the results (to floating-point tolerance, without dropout).
    """

    def __init__(self, model: nn.Module, data: TokenizedDataset, partitions: list[np.ndarray],
                 batch_size: int, optim: OptimConfig, head_keys: set[str], max_devices: int = 16) -> None:
        super().__init__(model, data, partitions, batch_size, optim, head_keys)
        if max_devices < 1:
            raise ValueError(f"max_devices must be >= 1, got {max_devices}")
        self.max_devices = max_devices
        self._said: set[str] = set()

    # ---------------------------------------------------------------------------------- routing
    def _fallback(self, reason: str) -> None:
        if reason not in self._said:
            self._said.add(reason)
            log.info("batched engine: %s; those tasks train one device at a time", reason)

    def _solo_reason(self, task: ClientTask) -> str | None:
        if task.loop != "local":
            return "the split loop trains devices one after the other"
        if task.regularizer is not None:
            return f"regulariser '{task.regularizer.name}' is defined on one device's adapter"
        return None

    def run(self, tasks: list[ClientTask]) -> list[ClientUpdate]:
        if any(t.chain for t in tasks):
            self._fallback("chained tasks (SFL-V2) depend on each other")
            return super().run(tasks)
        out: dict[int, ClientUpdate] = {}
        groups: dict[tuple[object, ...], list[int]] = {}
        for i, t in enumerate(tasks):
            reason = self._solo_reason(t)
            if reason is not None:
                self._fallback(reason)
                out[i] = self.run_one(t)
                continue
            key = (t.adapter, t.rank, t.freeze, id(t.base_delta), t.steps, t.lr_scale)
            groups.setdefault(key, []).append(i)
        for idx in groups.values():
            for start in range(0, len(idx), self.max_devices):
                chunk = idx[start:start + self.max_devices]
                for i, update in zip(chunk, self._run_chunk([tasks[i] for i in chunk])):
                    out[i] = update
        return [out[i] for i in range(len(tasks))]

    # ---------------------------------------------------------------------------------- one pass
    def _owners(self, params: dict[str, nn.Parameter]) -> dict[str, _Owner] | None:
        by_id = {}
        for module in self.model.modules():
            for attr, p in module.named_parameters(recurse=False):
                by_id[id(p)] = (module, attr)
        owners = {}
        for key, p in params.items():
            module, attr = by_id[id(p)]
            if not isinstance(module, nn.Linear):
                return None
            owners[key] = _Owner(module, attr)
        return owners

    def _run_chunk(self, tasks: list[ClientTask]) -> list[ClientUpdate]:
        if len(tasks) == 1:
            return [self.run_one(tasks[0])]
        self.load_task(tasks[0])
        params = state_params(self.model)
        owners = self._owners(params)
        config = getattr(self.model, "config", None)
        classification = (getattr(config, "num_labels", 2) > 1
                          and getattr(config, "problem_type", None) in (None, "single_label_classification"))
        if owners is None or not classification:
            self._fallback("a trainable tensor outside a linear layer, or a non-classification head")
            return [self.run_one(t) for t in tasks]
        dev = next(self.model.parameters()).device
        stacked = {k: torch.stack([t.state[k] for t in tasks]).to(dev, p.dtype).requires_grad_(p.requires_grad)
                   for k, p in params.items()}
        trainable = {k: v for k, v in stacked.items() if v.requires_grad}
        opt = make_optimizer(trainable, self.optim, lambda k: k in self.head_keys, tasks[0].lr_scale)
        hooks = self._install(owners, stacked, len(tasks))
        try:
            losses = self._train(tasks, trainable, opt, dev)
        finally:
            for h in hooks:
                h.remove()
        return [ClientUpdate(t.device, {k: v[d].detach().cpu().clone() for k, v in stacked.items()},
                             len(self.partitions[t.device]), float(np.mean(losses[d])), t.memo, None)
                for d, t in enumerate(tasks)]

    @staticmethod
    def _install(owners: dict[str, _Owner], stacked: dict[str, torch.Tensor], num: int) -> list[object]:
        """Forward hooks: each owning linear layer computes ``x_d W_d^T + b_d`` per device."""
        layers: dict[int, dict[str, torch.Tensor]] = {}
        modules: dict[int, nn.Linear] = {}
        for key, owner in owners.items():
            layers.setdefault(id(owner.module), {})[owner.attr] = stacked[key]
            modules[id(owner.module)] = owner.module

        def hook_for(tensors: dict[str, torch.Tensor]):
            def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
                x = inputs[0]
                weight = tensors.get("weight", module.weight)
                if weight.dim() == 2:
                    weight = weight.expand(num, *weight.shape)
                y = torch.matmul(x.reshape(num, -1, x.shape[-1]), weight.transpose(1, 2))   # (D, rows, out)
                bias = tensors.get("bias", module.bias)
                if bias is not None:
                    y = y + (bias.unsqueeze(1) if bias.dim() == 2 else bias)
                return y.reshape(*x.shape[:-1], y.shape[-1]).to(output.dtype)
            return hook

        return [modules[i].register_forward_hook(hook_for(t)) for i, t in layers.items()]

    def _train(self, tasks: list[ClientTask], trainable: dict[str, torch.Tensor], opt: torch.optim.Optimizer,
               dev: torch.device) -> list[list[float]]:
        streams: list[Iterator[dict[str, torch.Tensor]]] = [
            device_batches(self.data, self.partitions[t.device], t.steps, self.batch_size,
                           np.random.default_rng(t.seed), self.optim.batching == "length_grouped") for t in tasks]
        torch.manual_seed(tasks[0].seed)  # dropout (one mask over the chunk; see the module docstring)
        self.model.train()
        losses: list[list[float]] = [[] for _ in tasks]
        leaves = list(trainable.values())
        start = [p.detach().clone() for p in leaves] if self.optim.proximal_mu > 0 else None
        priors = [self.log_prior(t.device) for t in tasks]
        for _ in range(tasks[0].steps):
            per_device = [next(s) for s in streams]
            inputs, rows = pad_and_stack(per_device)
            labels = inputs.pop("labels")
            inputs = to_device(inputs, dev)
            opt.zero_grad(set_to_none=True)
            with precision_context(self.optim.precision, dev.type):
                logits = self.model(**inputs).logits
            total = logits.new_zeros((), dtype=torch.float32)
            for d, b in enumerate(per_device):
                n = int(b["labels"].shape[0])
                loss = local_loss(logits[d * rows:d * rows + n], labels[d * rows:d * rows + n].to(dev),
                                  priors[d], self.optim.logit_adjust_tau)
                losses[d].append(float(loss.detach()))
                total = total + loss
            if start is not None:   # FedProx per device; the sum over devices is one term over the stack
                total = total + proximal_term(leaves, start, self.optim.proximal_mu)
            total.backward()
            if self.optim.max_grad_norm is not None:
                per_device_clip_([p.grad for p in leaves if p.grad is not None], self.optim.max_grad_norm)
            opt.step()
        return losses
