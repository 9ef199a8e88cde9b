"""Evaluation of the global model on the held-out test set (length-sorted batches, no padding waste).

A strategy may evaluate an ensemble (papers.md §3 eq. 3: a device averages the outputs of its
subscribed LoRA modules with uniform weights): :func:`ensemble_metrics` averages the predicted
class probabilities of several models and scores the average.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from airtune.data.cache import TokenizedDataset, collate
from airtune.training.device import to_device
from airtune.training.local import precision_context


@torch.inference_mode()
def predict_logits(model: nn.Module, data: TokenizedDataset, batch_size: int = 128,
                   precision: str = "fp32") -> torch.Tensor:
    """Logits (N, C) of every example, in dataset order."""
    model.eval()
    device = next(model.parameters()).device
    order = np.argsort(data.lengths.numpy(), kind="stable")
    out: torch.Tensor | None = None
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = to_device(collate(data, idx), device)
        with precision_context(precision, device.type):
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float().cpu()
        if out is None:
            out = torch.empty(len(order), logits.shape[-1])
        out[torch.as_tensor(idx)] = logits
    return out if out is not None else torch.empty(0, 0)


def metrics_from_probs(probs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(accuracy, mean negative log-likelihood) of class probabilities (N, C)."""
    n = len(labels)
    nll = -torch.log(probs.clamp_min(1e-12)).gather(1, labels.view(-1, 1)).sum()
    return float((probs.argmax(-1) == labels).sum()) / n, float(nll) / n


def evaluate(model: nn.Module, data: TokenizedDataset, batch_size: int = 128,
             precision: str = "fp32") -> tuple[float, float]:
    """Return (accuracy, mean cross-entropy loss) over the whole dataset."""
    logits = predict_logits(model, data, batch_size, precision)
    return metrics_from_probs(torch.softmax(logits, -1), data.labels)


def ensemble_metrics(load_steps: Sequence[Callable[[], None]], model: nn.Module, data: TokenizedDataset,
                     precision: str = "fp32") -> tuple[float, float]:
    """Uniform average of the class probabilities of several models (each made current in the
    shared ``model`` by its ``load_steps`` callable), scored as one classifier."""
    total: torch.Tensor | None = None
    for load in load_steps:
        load()
        probs = torch.softmax(predict_logits(model, data, precision=precision), -1)
        total = probs if total is None else total + probs
    if total is None:
        raise ValueError("ensemble_metrics needs at least one model")
    return metrics_from_probs(total / len(load_steps), data.labels)
