"""airtune.data: GLUE loading, partitioning across devices, and the tokenisation cache.

``glue`` and ``partition`` are numpy only; the torch-based ``cache`` names are imported
lazily on first use so that importing this package does not import torch.
"""

from __future__ import annotations

from typing import Any

from airtune.data.glue import TextDataset, load_glue, resolve_data_dir, stratified_sample, stratified_split
from airtune.data.partition import check_partitions, describe, dirichlet, iid, label_counts, partition, shards

_LAZY = {
    "TokenizedDataset",
    "tokenize",
    "tokenize_cached",
    "collate",
    "default_cache_dir",
    "cache_key",
    "cache_path",
}

__all__ = [
    "TextDataset",
    "load_glue",
    "resolve_data_dir",
    "stratified_sample",
    "stratified_split",
    "iid",
    "dirichlet",
    "shards",
    "partition",
    "check_partitions",
    "label_counts",
    "describe",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from airtune.data import cache

        return getattr(cache, name)
    raise AttributeError(f"module 'airtune.data' has no attribute {name!r}")
