"""Split federated LoRA's loop against unsplit LoRA training: same gradients, same adapter; the
server never receives labels or token ids; the link traffic is the size of the real tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from airtune.data.cache import collate, tokenize
from airtune.data.glue import load_glue
from airtune.lora.adapters import LoraSpec, head_keys, inject_lora, trainable_params, trainable_state
from airtune.lora.split import ServerSide, Uplink, pack, split_model, unpack
from airtune.models.zoo import load_classifier, load_tokenizer, resolve_model
from airtune.training.engine import ClientTask, Engine
from airtune.training.local import OptimConfig, make_optimizer
from airtune.training.split_loop import split_train_steps
from tests.conftest import split_vs_unsplit

SPEC = resolve_model("minilm-l6")
LORA = LoraSpec(rank=4, alpha=8.0, dropout=0.0, target_modules=("query", "value"))
OPT = OptimConfig(lr=1e-3, head_lr=2e-3, max_grad_norm=1.0)
H = 384


@pytest.fixture(scope="module")
def small(glue_dir):
    train, _ = load_glue("sst2", glue_dir, seed=0, train_subset=64, test_subset=16)
    return tokenize(load_tokenizer(SPEC), train, max_length=32)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = inject_lora(load_classifier(SPEC, 2), LORA, SPEC.head_modules)
    with torch.no_grad():  # non-zero B so that every LoRA factor gets a gradient
        for k, p in trainable_params(m).items():
            if "lora_B" in k:
                p.normal_(0, 0.02)
    return m


def test_pack_unpack_round_trip():
    lengths = torch.tensor([3, 1, 2], dtype=torch.int32)
    x = torch.randn(3, 3, 5)
    packed = pack(x, lengths)
    assert packed.shape == (6, 5)
    y = unpack(packed, lengths)
    mask = torch.arange(3)[None, :] < lengths[:, None]
    assert torch.equal(y[mask], x[mask]) and torch.equal(y[~mask], torch.zeros_like(y[~mask]))


@pytest.mark.parametrize("downlink", ["tokens", "pooled"])
def test_split_gradients_equal_unsplit_gradients(model, small, downlink):
    batch = collate(small, np.arange(8))
    assert int(batch["attention_mask"].sum(1).min()) < batch["input_ids"].shape[1]   # padding present
    ref_loss, ref, loss, ours = split_vs_unsplit(model, batch, downlink)
    assert torch.equal(loss, ref_loss)
    assert ours.keys() == ref.keys() and len(ref) == 4 * 6 + 2     # q, v x (A, B) x 6 layers + head
    for k in ref:
        assert torch.equal(ours[k], ref[k]), k


@pytest.mark.parametrize("downlink,loss", [("tokens", "cross_entropy"), ("pooled", "cross_entropy"),
                                           ("tokens", "logit_adjusted")])
def test_split_training_equals_unsplit_training(model, small, downlink, loss):
    init = trainable_state(model)
    heads = set(head_keys(init))
    optim = OptimConfig(lr=OPT.lr, head_lr=OPT.head_lr, max_grad_norm=OPT.max_grad_norm, loss=loss)
    engine = Engine(model, small, [np.arange(64)], batch_size=8, optim=optim, head_keys=heads)
    ref = engine.run_one(ClientTask(0, init, steps=4, seed=3))
    ours = engine.run_one(ClientTask(0, init, steps=4, seed=3, loop="split", downlink=downlink))
    assert ours.train_loss == ref.train_loss
    for k in ref.state:
        assert torch.equal(ours.state[k], ref.state[k]), k
    moved = sum(float((ours.state[k] - init[k]).abs().sum()) for k in init)
    assert moved > 0
    assert ours.traffic.iterations == 4 and ours.traffic.uplink_bits > 0 and ref.traffic is None


def test_shared_server_lora_chains_devices(model, small):
    """SFL-V2: the second device starts from the first device's trained LoRA, its own head."""
    init = trainable_state(model)
    heads = set(head_keys(init))
    lora = tuple(k for k in init if k not in heads)
    engine = Engine(model, small, [np.arange(32), np.arange(32, 64)], batch_size=8, optim=OPT, head_keys=heads)
    split = {"loop": "split", "downlink": "pooled", "chain": lora}
    a, b = engine.run([ClientTask(0, init, 2, 1, **split), ClientTask(1, init, 2, 2, **split)])
    start_b = {**init, **{k: a.state[k] for k in lora}}
    b_ref = engine.run_one(ClientTask(1, start_b, 2, 2, loop="split", downlink="pooled"))
    for k in b.state:
        torch.testing.assert_close(b.state[k], b_ref.state[k], rtol=0, atol=0)


class SpyServer(ServerSide):
    """Records every argument the server-side code receives."""

    def __init__(self, *args):
        super().__init__(*args)
        self.received: list[object] = []

    def forward(self, up):
        self.received.append(up)
        return super().forward(up)

    def backward(self, grad):
        self.received.append(grad)
        return super().backward(grad)


def _tensors(obj):
    if isinstance(obj, Uplink):
        return [obj.embeddings, obj.lengths]
    return [obj]


@pytest.mark.parametrize("downlink", ["tokens", "pooled"])
def test_server_never_receives_labels_or_token_ids(model, small, downlink):
    device, _ = split_model(model, downlink)
    spy = SpyServer(model, downlink)
    batches = [collate(small, np.arange(i, i + 8)) for i in (0, 8, 16)]
    params = trainable_params(model)
    heads = set(head_keys(params))
    dev_opt = make_optimizer({k: p for k, p in params.items() if k in heads}, OPT, lambda k: True)
    srv_opt = make_optimizer({k: p for k, p in params.items() if k not in heads}, OPT, lambda k: False)
    losses, traffic = split_train_steps(device, spy, batches, dev_opt, srv_opt, OPT)
    assert len(spy.received) == 2 * len(batches)
    ups = [r for r in spy.received if isinstance(r, Uplink)]
    assert len(ups) == len(batches)
    for r, batch in zip(spy.received, [b for b in batches for _ in (0, 1)]):
        for t in _tensors(r):
            if t.is_floating_point():
                continue
            # the only integer tensor the server gets is the lengths, never ids or labels
            assert t.dtype == torch.int32 and t.shape == batch["labels"].shape
            assert torch.equal(t.long(), batch["attention_mask"].sum(1))
        assert not any(t.shape == batch["input_ids"].shape and not t.is_floating_point() for t in _tensors(r))
    # measured traffic = the real tensors: embeddings (T, H) fp32 + lengths + feature gradient
    # + 2 head-gradient norms up; features + 1 clipping factor down
    tokens = [int(b["attention_mask"].sum()) for b in batches]
    n = [b["labels"].numel() for b in batches]
    feat = [t * H * 32 if downlink == "tokens" else k * H * 32 for t, k in zip(tokens, n)]
    assert traffic.uplink_bits == sum(t * H * 32 + k * 32 + f + 2 * 32 for t, k, f in zip(tokens, n, feat))
    assert traffic.downlink_bits == sum(f + 32 for f in feat)
    assert traffic.iterations == 3 and all(np.isfinite(losses))
