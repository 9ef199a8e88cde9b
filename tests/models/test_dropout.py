"""``model.dropout`` overrides the encoder's hidden and attention dropout; null keeps the checkpoint's."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from airtune.models.zoo import load_classifier, resolve_model


def _dropout_ps(model: nn.Module) -> set[float]:
    return {m.p for m in model.modules() if isinstance(m, nn.Dropout)}


def test_null_keeps_checkpoint_dropout():
    assert _dropout_ps(load_classifier(resolve_model("minilm-l6"), 2)) == {0.1}


@pytest.mark.parametrize("p", [0.0, 0.25])
def test_override_sets_every_encoder_dropout(p):
    model = load_classifier(resolve_model("minilm-l6"), 2, dropout=p)
    assert _dropout_ps(model) == {p}


def test_zero_dropout_makes_train_mode_deterministic():
    """With p = 0, train-mode forward passes agree with eval mode (nothing is dropped)."""
    model = load_classifier(resolve_model("minilm-l6"), 2, dropout=0.0)
    ids = torch.tensor([[101, 2023, 3185, 2001, 2307, 102]])
    mask = torch.ones_like(ids)
    model.train()
    a = model(input_ids=ids, attention_mask=mask).logits
    model.eval()
    b = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(a, b)


def test_config_bounds():
    from airtune.config.schema import Config

    with pytest.raises(ValueError, match="dropout"):
        Config.model_validate({"model": {"dropout": 1.0}})
