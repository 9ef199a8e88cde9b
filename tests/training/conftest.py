"""Fixtures shared by the training tests: a small SST-2 pool and a MiniLM-L6 with rank-4 LoRA."""

from __future__ import annotations

import pytest
import torch
from torch import nn


@pytest.fixture(scope="module")
def tiny_sst2(glue_dir):
    """64 tokenized SST-2 training sentences (max 32 tokens)."""
    from airtune.data.cache import tokenize
    from airtune.data.glue import load_glue
    from airtune.models.zoo import load_tokenizer, resolve_model

    train, _ = load_glue("sst2", glue_dir, seed=0, train_subset=64, test_subset=16)
    return tokenize(load_tokenizer(resolve_model("minilm-l6")), train, max_length=32)


@pytest.fixture(scope="module")
def tiny_model():
    """MiniLM-L6 with rank-4 LoRA on query/value and dropout off (deterministic steps)."""
    from airtune.lora.adapters import LoraSpec, inject_lora
    from airtune.models.zoo import load_classifier, resolve_model

    spec = resolve_model("minilm-l6")
    torch.manual_seed(0)
    lora = LoraSpec(rank=4, alpha=8.0, dropout=0.0, target_modules=("query", "value"))
    m = inject_lora(load_classifier(spec, 2), lora, spec.head_modules)
    for mod in m.modules():
        if isinstance(mod, nn.Dropout):
            mod.p = 0.0
    return m
