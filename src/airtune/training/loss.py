"""Local training losses: plain cross-entropy and the logit-adjusted (balanced-softmax) loss.

Under label skew each device's data is nearly one class, so plain cross-entropy pulls its
classifier towards that class, and the aggregate of a few such devices follows the label balance
of whoever was scheduled and delivered (docs/design.md "Learning under label skew"). The
logit-adjusted loss trains on ``logits + tau * log(pi_k)``, with ``pi_k`` the device's own label
distribution, and predicts with the raw logits:

    l(x, y) = -log softmax(f(x) + tau * log pi_k)_y

Menon et al., "Long-tail learning via logit adjustment" (ICLR 2021), eq. 10 (their
"logit-adjusted loss"); with tau = 1 it is Ren et al.'s balanced softmax (NeurIPS 2020), and
FedLC (Zhang et al., ICML 2022) applies the same calibration per device in federated learning
with label skew. The device needs only its own label counts, which it holds.

Our choices: ``pi_k`` is Laplace-smoothed, ``(n_c + 1) / (n + C)``, so a class a device never
saw gets a finite offset (about ``log(1/n)``) instead of ``-inf``; tau is a config option
(``train.logit_adjust_tau``, default 1 as in balanced softmax).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def label_log_prior(labels: Tensor, num_classes: int) -> Tensor:
    """``log pi``: (C,) float32 Laplace-smoothed log label frequencies, ``log((n_c + 1) / (n + C))``."""
    if num_classes < 1:
        raise ValueError(f"num_classes = {num_classes}: need at least one class")
    counts = torch.bincount(labels.reshape(-1).long(), minlength=num_classes).to(torch.float64)
    if counts.numel() > num_classes:
        raise ValueError(f"labels hold class {counts.numel() - 1} but num_classes = {num_classes}")
    return torch.log((counts + 1.0) / (counts.sum() + num_classes)).to(torch.float32)


def logit_adjusted_cross_entropy(logits: Tensor, labels: Tensor, log_prior: Tensor, tau: float) -> Tensor:
    """Mean of ``-log softmax(logits + tau * log_prior)[y]`` over the batch (Menon et al. 2021, eq. 10).

    ``logits``: (B, C); ``labels``: (B,) class ids; ``log_prior``: (C,). ``tau = 0`` is plain
    cross-entropy. Computed in float32 whatever the autocast dtype of ``logits``.
    """
    shifted = logits.float() + tau * log_prior.to(logits.device, torch.float32)
    return nn.functional.cross_entropy(shifted, labels)


def local_loss(logits: Tensor, labels: Tensor, log_prior: Tensor | None, tau: float) -> Tensor:
    """The configured local loss: plain cross-entropy when ``log_prior`` is None, else logit-adjusted."""
    if log_prior is None:
        return nn.functional.cross_entropy(logits.float(), labels)
    return logit_adjusted_cross_entropy(logits, labels, log_prior, tau)
