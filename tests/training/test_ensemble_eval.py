"""Ensemble evaluation: uniform average of class probabilities (papers.md §3 eq. 3), hand-checked."""

from __future__ import annotations

import math

import torch

from airtune.training.evaluate import metrics_from_probs


def test_metrics_from_probs_by_hand():
    probs = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]])
    labels = torch.tensor([0, 0, 0])
    acc, nll = metrics_from_probs(probs, labels)
    assert acc == 2 / 3
    assert math.isclose(nll, -(math.log(0.9) + math.log(0.4) + math.log(0.7)) / 3, rel_tol=1e-6)


def test_uniform_ensemble_can_beat_each_member():
    # member 1 is right on examples 0 and 1, member 2 on 0 and 2; their average is right on all three
    m1 = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.45, 0.55]])
    m2 = torch.tensor([[0.9, 0.1], [0.45, 0.55], [0.8, 0.2]])
    labels = torch.zeros(3, dtype=torch.long)
    assert metrics_from_probs(m1, labels)[0] == metrics_from_probs(m2, labels)[0] == 2 / 3
    assert metrics_from_probs((m1 + m2) / 2, labels)[0] == 1.0
