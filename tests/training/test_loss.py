"""The logit-adjusted loss (training/loss.py) by hand, its defining property, and its wiring into
the engines: the device's own label counts give the prior; tau = 0 is plain cross-entropy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from airtune.training.loss import label_log_prior, local_loss, logit_adjusted_cross_entropy


def test_label_log_prior_by_hand():
    # counts (3, 1) over 2 classes, Laplace-smoothed: (4/6, 2/6)
    lp = label_log_prior(torch.tensor([0, 0, 1, 0]), 2)
    torch.testing.assert_close(lp, torch.tensor([math.log(2 / 3), math.log(1 / 3)]))
    # a class never seen gets log(1 / (n + C)), finite
    lp = label_log_prior(torch.tensor([1, 1, 1]), 3)
    torch.testing.assert_close(lp, torch.tensor([math.log(1 / 6), math.log(4 / 6), math.log(1 / 6)]))


def test_label_log_prior_refuses_bad_input():
    with pytest.raises(ValueError, match="num_classes"):
        label_log_prior(torch.tensor([0, 2]), 2)
    with pytest.raises(ValueError, match="at least one class"):
        label_log_prior(torch.tensor([0]), 0)


def test_logit_adjusted_loss_by_hand():
    logits = torch.zeros(2, 2)
    lp = torch.tensor([math.log(2 / 3), math.log(1 / 3)])
    # tau = 1: softmax(log pi) = pi, so the losses are -log(2/3) and -log(1/3); mean of the two
    got = logit_adjusted_cross_entropy(logits, torch.tensor([0, 1]), lp, 1.0)
    assert float(got) == pytest.approx(0.5 * (-math.log(2 / 3) - math.log(1 / 3)), rel=1e-6)
    # tau = 0.5 on label 0: -log(e^{0.5 log 2/3} / (e^{0.5 log 2/3} + e^{0.5 log 1/3})) = -log(sqrt2/(sqrt2+1))
    got = logit_adjusted_cross_entropy(logits[:1], torch.tensor([0]), lp, 0.5)
    assert float(got) == pytest.approx(-math.log(math.sqrt(2) / (math.sqrt(2) + 1)), rel=1e-6)


def test_tau_zero_and_no_prior_are_plain_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(7, 3, generator=g), torch.randint(0, 3, (7,), generator=g)
    ce = nn.functional.cross_entropy(logits, y)
    lp = label_log_prior(y, 3)
    assert torch.equal(logit_adjusted_cross_entropy(logits, y, lp, 0.0), ce)
    assert torch.equal(local_loss(logits, y, None, 1.0), ce)


def test_the_minimiser_is_the_balanced_classifier():
    """Menon et al. 2021: on data with label prior pi, minimising the tau = 1 loss over a bias b
    gives b + log pi' = log p (the empirical frequencies), i.e. b0 - b1 = log(p0/p1) - log(pi'0/pi'1);
    plain cross-entropy gives b0 - b1 = log(p0/p1) = log 9 for 90 / 10 labels."""
    y = torch.tensor([0] * 90 + [1] * 10)
    lp = label_log_prior(y, 2)                      # (91/102, 11/102)
    for prior, expect in ((None, math.log(9)), (lp, math.log(9) - math.log(91 / 11))):
        b = torch.zeros(2, requires_grad=True)
        opt = torch.optim.LBFGS([b], lr=1, max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-14)

        def closure(prior=prior, b=b, opt=opt):
            opt.zero_grad()
            loss = local_loss(b.expand(len(y), 2), y, prior, 1.0)
            loss.backward()
            return loss
        opt.step(closure)
        assert float((b[0] - b[1]).detach()) == pytest.approx(expect, abs=1e-4)
    assert math.log(9) - math.log(91 / 11) == pytest.approx(math.log(99 / 91))


# ---------------------------------------------------------------------------- engine wiring
def _engine(model, data, parts, **optim):
    from airtune.lora.adapters import head_keys, trainable_state
    from airtune.training.engine import Engine
    from airtune.training.local import OptimConfig

    heads = set(head_keys(trainable_state(model)))
    return Engine(model, data, parts, 8, OptimConfig(lr=1e-3, head_lr=2e-3, **optim), heads)


def test_engine_prior_is_the_devices_own_label_counts(tiny_model, tiny_sst2):
    parts = [np.arange(0, 20), np.arange(20, 64)]
    assert _engine(tiny_model, tiny_sst2, parts).log_prior(0) is None
    eng = _engine(tiny_model, tiny_sst2, parts, loss="logit_adjusted")
    for d, idx in enumerate(parts):
        counts = np.bincount(tiny_sst2.labels[idx].numpy(), minlength=2)
        expect = np.log((counts + 1) / (counts.sum() + 2))
        np.testing.assert_allclose(eng.log_prior(d).numpy(), expect, rtol=1e-6)


def test_engine_trains_with_the_adjusted_loss(tiny_model, tiny_sst2):
    """tau = 0 reproduces plain training bit for bit; tau = 1 trains to a different state."""
    from airtune.lora.adapters import trainable_state
    from airtune.training.engine import ClientTask

    parts = [np.arange(64)]
    init = trainable_state(tiny_model)
    task = ClientTask(0, init, steps=3, seed=1)
    ref = _engine(tiny_model, tiny_sst2, parts).run_one(task)
    zero = _engine(tiny_model, tiny_sst2, parts, loss="logit_adjusted", logit_adjust_tau=0.0).run_one(task)
    one = _engine(tiny_model, tiny_sst2, parts, loss="logit_adjusted", logit_adjust_tau=1.0).run_one(task)
    assert zero.train_loss == ref.train_loss
    for k in ref.state:
        assert torch.equal(zero.state[k], ref.state[k]), k
    assert one.train_loss != ref.train_loss
    assert any(not torch.equal(one.state[k], ref.state[k]) for k in ref.state)
