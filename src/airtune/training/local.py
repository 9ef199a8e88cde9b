"""The reference single-device training loop: what one device does in one round.

Every faster or split execution path is tested against this loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from airtune.training.loss import logit_adjusted_cross_entropy


@dataclass(frozen=True)
class OptimConfig:
    """Local optimiser settings (``train`` section of the config)."""

    lr: float
    head_lr: float | None = None
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    max_grad_norm: float | None = 1.0
    precision: str = "fp32"
    proximal_mu: float = 0.0   # FedProx (Li et al., MLSys 2020): + mu/2 ||w - w_start||^2 per step
    loss: str = "cross_entropy"   # cross_entropy | logit_adjusted (training/loss.py)
    logit_adjust_tau: float = 1.0
    batching: str = "random"      # random | length_grouped (training/engine.device_batches)
    lora_b_lr_ratio: float = 1.0  # LoRA+ (Hayou et al., ICML 2024): lr of the B factors = ratio * lr


def precision_context(precision: str, device_type: str = "cpu"):
    """bf16 autocast on the training device (CPU: AVX-512-BF16; CUDA) or a no-op for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _device_type(model: nn.Module) -> str:
    return next(model.parameters()).device.type


def _is_lora_b(key: str) -> bool:
    """A LoRA B factor (``...lora_B.<adapter>.weight``, shape (d_out, r)), PEFT's naming."""
    return ".lora_B." in key


def make_optimizer(params: dict[str, nn.Parameter], cfg: OptimConfig, is_head: Callable[[str], bool],
                   lr_scale: float = 1.0):
    """AdamW (or SGD) with a separate learning rate for the task head; both learning rates are
    multiplied by ``lr_scale`` (this round's factor of ``train.lr_schedule``, ``training/schedule.py``).
    ``head_lr == 0`` keeps the head in its group at learning rate 0: AdamW's and SGD's updates and
    decoupled weight decay are then exact no-ops, so the head stays bit-for-bit at its initialisation
    (FedBABU, Oh et al., ICLR 2022), while the gradient clipping norm still covers it.
    ``cfg.lora_b_lr_ratio`` = lambda puts the B factors at lambda * lr (LoRA+, Hayou, Ghosh, Yu,
    ICML 2024, Sec. 3: eta_B = lambda eta_A; the paper suggests lambda around 2^4); the A factors
    and any other non-head tensor stay at lr."""
    head = [p for k, p in params.items() if is_head(k)]
    split_b = cfg.lora_b_lr_ratio != 1.0   # ratio 1 keeps one body group: the same order, bit for bit
    b_factors = [p for k, p in params.items() if split_b and not is_head(k) and _is_lora_b(k)]
    body = [p for k, p in params.items() if not is_head(k) and not (split_b and _is_lora_b(k))]
    lr, head_lr = cfg.lr * lr_scale, (cfg.lr if cfg.head_lr is None else cfg.head_lr) * lr_scale
    groups = [g for g in ({"params": body, "lr": lr}, {"params": b_factors, "lr": lr * cfg.lora_b_lr_ratio},
                          {"params": head, "lr": head_lr}) if g["params"]]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=cfg.weight_decay)


def proximal_term(params: list[torch.Tensor], start: list[torch.Tensor], mu: float) -> torch.Tensor:
    """FedProx's proximal term: mu/2 * sum_p ||p - p0||_F^2 (Li et al., MLSys 2020, eq. 2)."""
    return 0.5 * mu * sum(((p - p0) ** 2).sum() for p, p0 in zip(params, start))


def train_steps(
    model: nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    cfg: OptimConfig,
    extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
    log_prior: torch.Tensor | None = None,
) -> list[float]:
    """Run one optimiser step per batch; return the per-step training losses.

    ``extra_loss(model)`` adds a regulariser (e.g. HetLoRA's tail penalty, SOFT's orthogonality).
    ``cfg.proximal_mu > 0`` adds FedProx's proximal term mu/2 ||w - w0||^2 over the trained
    tensors, w0 being their values when the loop starts (the global model the device received).
    ``log_prior`` (C,), the device's log label frequencies, switches the data loss to the
    logit-adjusted cross-entropy with ``cfg.logit_adjust_tau`` (``training/loss.py``); the
    returned losses are then that adjusted data loss.
    """
    model.train()
    losses: list[float] = []
    params = [p for g in optimizer.param_groups for p in g["params"]]
    start = [p.detach().clone() for p in params] if cfg.proximal_mu > 0 else None
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        with precision_context(cfg.precision, _device_type(model)):
            out = model(**batch)
            loss = out.loss if log_prior is None else \
                logit_adjusted_cross_entropy(out.logits, batch["labels"], log_prior, cfg.logit_adjust_tau)
        data_loss = loss
        if extra_loss is not None:
            loss = loss + extra_loss(model)
        if start is not None:
            loss = loss + proximal_term(params, start, cfg.proximal_mu)
        loss.backward()
        if cfg.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        losses.append(float(data_loss.detach()))
    return losses
