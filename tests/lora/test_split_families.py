"""The split of ``lora/split.py`` on tiny randomly initialised BERT and RoBERTa encoders (no download):
split forward/backward equals the unsplit model's exactly, with padding and dropout present."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel

from airtune.lora.adapters import LoraSpec, inject_lora, trainable_params
from airtune.lora.split import split_model
from airtune.models.heads import MeanPoolClassifier
from tests.conftest import split_vs_unsplit

LORA = LoraSpec(rank=2, alpha=4.0, dropout=0.0, target_modules=("query", "value"))
SIZES = dict(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
             max_position_embeddings=40, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def _family(name: str):
    torch.manual_seed(0)
    if name == "bert":
        encoder = BertModel(BertConfig(type_vocab_size=2, **SIZES), add_pooling_layer=False)
    else:
        encoder = RobertaModel(RobertaConfig(pad_token_id=1, type_vocab_size=1, **SIZES), add_pooling_layer=False)
    model = inject_lora(MeanPoolClassifier(encoder, 2), LORA, ("classifier",))
    with torch.no_grad():  # non-zero B so that every LoRA factor gets a gradient
        for k, p in trainable_params(model).items():
            if "lora_B" in k:
                p.normal_(0, 0.1)
    return model


def _batch(name: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([7, 3, 5, 1])
    mask = (torch.arange(7)[None, :] < lengths[:, None]).long()
    ids = torch.randint(3, 60, (4, 7), generator=g) * mask + (1 if name == "roberta" else 0) * (1 - mask)
    batch = {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1, 0])}
    if name == "bert":
        batch["token_type_ids"] = (torch.arange(7)[None, :] >= 2).long() * mask
    return batch


@pytest.mark.parametrize("downlink", ["tokens", "pooled"])
@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_split_equals_unsplit_exactly(family, downlink):
    model, batch = _family(family), _batch(family)
    assert int(batch["attention_mask"].sum(1).min()) < batch["input_ids"].shape[1]      # padding present
    ref_loss, ref, loss, ours = split_vs_unsplit(model, batch, downlink)
    assert torch.equal(loss, ref_loss)
    assert ours.keys() == ref.keys() and len(ref) == 2 * 2 * 2 + 2     # q, v x (A, B) x 2 layers + head
    for k in ref:
        assert torch.equal(ours[k], ref[k]), k
    assert all(float(g.abs().sum()) > 0 for g in ours.values())


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_split_uplink_is_the_embedding_output(family):
    """The device sends what the encoder's embedding module outputs, real tokens only."""
    model, batch = _family(family), _batch(family)
    model.eval()
    device, _ = split_model(model, "tokens")
    up = device.embed(batch)
    inner = model.get_base_model().encoder
    captured = []
    handle = inner.embeddings.register_forward_hook(lambda m, a, out: captured.append(out))
    with torch.no_grad():
        inner(**{k: v for k, v in batch.items() if k != "labels"})
    handle.remove()
    mask = batch["attention_mask"].bool()
    assert torch.equal(up.embeddings, captured[0][mask])
    assert up.lengths.tolist() == [7, 3, 5, 1]


def test_split_rejects_a_model_without_embeddings():
    class Bare(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.classifier = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)

    with pytest.raises(ValueError, match="'embeddings' submodule"):
        split_model(Bare())
