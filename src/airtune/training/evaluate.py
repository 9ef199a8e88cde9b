"""Evaluation of the global model on the held-out test set (length-sorted batches, no padding waste)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from airtune.data.cache import TokenizedDataset, collate
from airtune.training.local import precision_context


@torch.inference_mode()
def evaluate(model: nn.Module, data: TokenizedDataset, batch_size: int = 128,
             precision: str = "fp32") -> tuple[float, float]:
    """Return (accuracy, mean cross-entropy loss) over the whole dataset."""
    model.eval()
    order = np.argsort(data.lengths.numpy(), kind="stable")
    correct, loss_sum, n = 0, 0.0, len(order)
    for start in range(0, n, batch_size):
        batch = collate(data, order[start:start + batch_size])
        with precision_context(precision):
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
        labels = batch["labels"]
        loss_sum += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(-1) == labels).sum())
    return correct / n, loss_sum / n
