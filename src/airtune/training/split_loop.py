r"""The split local loop: one device and the edge server train together, iteration by iteration.

Per local iteration (papers.md §1.4 step 3 [R], [wang2025sfl]):

1. device: embedding-module forward -> uplink packed embeddings + lengths;
2. server: encoder forward with the device's LoRA copy -> downlink features;
3. device: head forward, loss, backward -> uplink the gradient of the features;
4. server: backward through the encoder into the LoRA factors;
5. clipping (``max_grad_norm``): device uplinks its head-gradient norms, server downlinks the
   joint factor, both scale their gradients (identical to ``clip_grad_norm_`` over LoRA + head);
6. device steps the head optimiser, server steps the LoRA optimiser.

With the same batches and seed this is the same computation as ``training/local.train_steps`` on
the unsplit model (tested: equal gradients and adapters to float tolerance). Every tensor that
crosses the link is counted in :class:`LinkTraffic` with its real size (numel x element bits).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from airtune.lora.split import DeviceSide, ServerSide
from airtune.training.local import OptimConfig, precision_context

__all__ = ["LinkTraffic", "split_train_steps", "tensor_bits_of"]


def tensor_bits_of(*tensors: Tensor) -> int:
    """Bits of tensors as sent: numel x element width."""
    return int(sum(t.numel() * t.element_size() * 8 for t in tensors))


@dataclass
class LinkTraffic:
    """Bits that crossed the device-server link during one device's local iterations."""

    uplink_bits: int = 0
    downlink_bits: int = 0
    iterations: int = 0

    def up(self, *tensors: Tensor) -> None:
        self.uplink_bits += tensor_bits_of(*tensors)

    def down(self, *tensors: Tensor) -> None:
        self.downlink_bits += tensor_bits_of(*tensors)

    def as_info(self) -> dict[str, int]:
        return {"split_uplink_bits": self.uplink_bits, "split_downlink_bits": self.downlink_bits,
                "split_iterations": self.iterations}


def _grads(params: list[nn.Parameter]) -> list[Tensor]:
    return [p.grad for p in params if p.grad is not None]


def _clip_factor(server_grads: list[Tensor], device_norms: Tensor, max_norm: float) -> Tensor:
    """The factor of ``torch.nn.utils.clip_grad_norm_`` over both sides' gradients (server side)."""
    norms = [torch.linalg.vector_norm(g, 2.0) for g in server_grads] + list(device_norms)
    total = torch.linalg.vector_norm(torch.stack(norms), 2.0)
    return torch.clamp(max_norm / (total + 1e-6), max=1.0)


def split_train_steps(
    device: DeviceSide,
    server: ServerSide,
    batches: Iterable[dict[str, Tensor]],
    device_opt: torch.optim.Optimizer,
    server_opt: torch.optim.Optimizer,
    cfg: OptimConfig,
    log_prior: Tensor | None = None,
) -> tuple[list[float], LinkTraffic]:
    """Run one split iteration per batch; return the per-step losses and the measured traffic.

    ``device_opt`` holds the head parameters, ``server_opt`` the LoRA factors. Only ``device``
    reads the batch; ``server`` receives :class:`~airtune.lora.split.Uplink` messages and
    gradients of the features, never token ids or labels. ``log_prior``: the device's log label
    frequencies for the logit-adjusted loss (``training/loss.py``), applied on the device side.
    """
    dev_params = [p for g in device_opt.param_groups for p in g["params"]]
    srv_params = [p for g in server_opt.param_groups for p in g["params"]]
    traffic = LinkTraffic()
    losses: list[float] = []
    device_type = srv_params[0].device.type if srv_params else "cpu"
    for batch in batches:
        device_opt.zero_grad(set_to_none=True)
        server_opt.zero_grad(set_to_none=True)
        with precision_context(cfg.precision, device_type):
            up = device.embed(batch)                                   # step 1
        traffic.up(up.embeddings, up.lengths)
        with precision_context(cfg.precision, device_type):
            features = server.forward(up)                              # step 2
        traffic.down(features)
        with precision_context(cfg.precision, device_type):
            loss, leaf = device.loss(features, up.lengths, batch["labels"],   # step 3
                                     log_prior, cfg.logit_adjust_tau)
        loss.backward()
        traffic.up(leaf.grad)
        server.backward(leaf.grad)                                     # step 4
        if cfg.max_grad_norm is not None:                              # step 5
            dev_grads = _grads(dev_params)
            dev_norms = torch.stack([torch.linalg.vector_norm(g, 2.0) for g in dev_grads])
            traffic.up(dev_norms)
            factor = _clip_factor(_grads(srv_params), dev_norms, cfg.max_grad_norm)
            traffic.down(factor)
            for g in dev_grads + _grads(srv_params):
                g.mul_(factor)
        device_opt.step()                                              # step 6
        server_opt.step()
        traffic.iterations += 1
        losses.append(float(loss.detach()))
    return losses, traffic
