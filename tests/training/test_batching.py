"""Local batches (training/engine.device_batches): length grouping trains on the same examples as
random batching, with the batches sorted by length, and less padding."""

from __future__ import annotations

import numpy as np
import torch

from airtune.data.cache import collate
from airtune.training.engine import device_batches


def _ids(batch):
    return [tuple(r.tolist()) for r in batch["input_ids"]]


def _padded_tokens(batches):
    return sum(int(b["input_ids"].numel()) for b in batches)


def test_random_batches_follow_the_seeded_permutation(tiny_sst2):
    idx = np.arange(10, 50)
    got = list(device_batches(tiny_sst2, idx, steps=6, batch_size=8, rng=np.random.default_rng(3)))
    rng = np.random.default_rng(3)
    order = np.concatenate([rng.permutation(idx), rng.permutation(idx)])   # 48 draws > 40: a second epoch
    for i, b in enumerate(got):
        ref = collate(tiny_sst2, order[8 * i:8 * (i + 1)])
        assert torch.equal(b["input_ids"], ref["input_ids"]) and torch.equal(b["labels"], ref["labels"])


def test_length_grouping_keeps_the_rounds_examples(tiny_sst2):
    idx = np.arange(64)
    for seed in range(5):
        rnd = list(device_batches(tiny_sst2, idx, 5, 8, np.random.default_rng(seed)))
        grp = list(device_batches(tiny_sst2, idx, 5, 8, np.random.default_rng(seed), group_by_length=True))
        assert len(grp) == 5 and all(len(b["labels"]) == 8 for b in grp)
        strip = [(tuple(t for t in row if t != tiny_sst2.pad_id), int(y))
                 for b in rnd for row, y in zip(b["input_ids"].tolist(), b["labels"])]
        strip_g = [(tuple(t for t in row if t != tiny_sst2.pad_id), int(y))
                   for b in grp for row, y in zip(b["input_ids"].tolist(), b["labels"])]
        assert sorted(strip) == sorted(strip_g)                       # same examples, same labels
        lengths = [b["attention_mask"].sum(1) for b in grp]
        spans = sorted((int(x.min()), int(x.max())) for x in lengths)  # batches cover disjoint length ranges
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
        assert _padded_tokens(grp) <= _padded_tokens(rnd)
    assert _padded_tokens(grp) < _padded_tokens(rnd)
