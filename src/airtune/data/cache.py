"""Tokenise a TextDataset once, keep the token ids on disk, and batch with dynamic padding.

``tokenize_cached`` stores token ids as an ``.npz`` file (no pickle) keyed by a hash of the
model key, dataset name, split, ``max_length``, the number of rows and a digest of every text
and label, so that a different subset or a different tokeniser setting never collides. Files
are written atomically (temporary file + ``os.replace``), so concurrent runs at worst both
tokenise.

``collate`` gathers a batch and trims the padding to the longest sequence in the batch: on a
CPU the cost of a transformer pass grows with the padded length, so this is the main speed
lever there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from airtune.data.glue import TextDataset
from airtune.errors import DataError

log = logging.getLogger(__name__)

ENV_CACHE_DIR = "AIRTUNE_CACHE_DIR"
CACHE_FORMAT = 1  # bump when the stored layout or tokenisation call changes
_CHUNK = 4096  # rows per tokeniser call (bounds peak memory of Python lists)


@dataclass(frozen=True, eq=False)
class TokenizedDataset:
    """Token ids of one split, right-padded to the longest sequence of the split.

    Attributes
    ----------
    input_ids : torch.Tensor
        (N, L) int32, right-padded with ``pad_id``.
    lengths : torch.Tensor
        (N,) int32 number of real tokens per row (special tokens included).
    labels : torch.Tensor
        (N,) int64 class ids.
    token_type_ids : torch.Tensor | None
        (N, L) int32 segment ids where the tokeniser returns them (BERT), else None.
    pad_id : int
        Padding token id.
    """

    input_ids: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    token_type_ids: torch.Tensor | None = None
    pad_id: int = 0

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def max_len(self) -> int:
        """L, the padded width."""
        return int(self.input_ids.shape[1])


def default_cache_dir() -> Path:
    """``$AIRTUNE_CACHE_DIR`` if set, else ``~/.cache/airtune/tokens``."""
    env = os.environ.get(ENV_CACHE_DIR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "airtune" / "tokens"


def dataset_digest(dataset: TextDataset) -> str:
    """Hex blake2b digest of every text (both sentences of a pair) and label, in order."""
    h = hashlib.blake2b(digest_size=16)
    b = dataset.texts_b
    for i, a in enumerate(dataset.texts_a):
        h.update(a.encode("utf-8"))
        h.update(b"\x1f")
        if b is not None:
            h.update(b[i].encode("utf-8"))
        h.update(b"\x1e")
    h.update(np.ascontiguousarray(dataset.labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def cache_key(dataset: TextDataset, *, model_key: str, split: str, max_length: int) -> str:
    """Hex key of a tokenised split: hash of (format, model, name, split, max_length, rows, texts)."""
    material = {
        "format": CACHE_FORMAT,
        "model_key": model_key,
        "dataset": dataset.name,
        "split": split,
        "max_length": int(max_length),
        "rows": len(dataset),
        "pair": dataset.is_pair,
        "texts": dataset_digest(dataset),
    }
    blob = json.dumps(material, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:24]


def cache_path(cache_dir: Path, dataset: TextDataset, *, model_key: str, split: str, max_length: int) -> Path:
    """``<cache_dir>/<name>-<split>-L<max_length>-<key>.npz`` (readable prefix, exact key)."""
    key = cache_key(dataset, model_key=model_key, split=split, max_length=max_length)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{dataset.name}-{split}")
    return Path(cache_dir) / f"{safe}-L{int(max_length)}-{key}.npz"


def tokenize(tokenizer: Any, dataset: TextDataset, *, max_length: int) -> TokenizedDataset:
    """Tokenise every row (pairs as pairs, truncated to ``max_length``), without caching."""
    if int(max_length) < 2:
        raise DataError(f"max_length={max_length!r} is too small; fix: use e.g. data.max_length=64")
    pad_id = getattr(tokenizer, "pad_token_id", None)
    pad_id = 0 if pad_id is None else int(pad_id)
    ids: list[list[int]] = []
    types: list[list[int]] | None = []
    for lo in range(0, len(dataset), _CHUNK):
        a = dataset.texts_a[lo : lo + _CHUNK]
        b = None if dataset.texts_b is None else dataset.texts_b[lo : lo + _CHUNK]
        enc = tokenizer(a, b, truncation=True, max_length=int(max_length), padding=False)
        ids.extend(enc["input_ids"])
        tt = enc.get("token_type_ids") if hasattr(enc, "get") else None
        if tt is None:
            types = None
        elif types is not None:
            types.extend(tt)
    n = len(ids)
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int32, count=n)
    width = int(lengths.max()) if n else 0
    input_ids = np.full((n, width), pad_id, dtype=np.int32)
    token_types = np.zeros((n, width), dtype=np.int32) if types is not None else None
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = row
        if token_types is not None:
            token_types[i, : len(row)] = types[i]  # type: ignore[index]
    return _to_torch(input_ids, lengths, dataset.labels, token_types, pad_id)


def _to_torch(
    input_ids: np.ndarray, lengths: np.ndarray, labels: np.ndarray, token_types: np.ndarray | None, pad_id: int
) -> TokenizedDataset:
    return TokenizedDataset(
        input_ids=torch.from_numpy(np.ascontiguousarray(input_ids, dtype=np.int32)),
        lengths=torch.from_numpy(np.ascontiguousarray(lengths, dtype=np.int32)),
        labels=torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
        token_type_ids=None if token_types is None else torch.from_numpy(np.ascontiguousarray(token_types, np.int32)),
        pad_id=int(pad_id),
    )


def tokenize_cached(
    tokenizer: Any,
    dataset: TextDataset,
    *,
    max_length: int,
    cache_dir: Path | str | None,
    model_key: str,
    split: str,
) -> TokenizedDataset:
    """Tokenise ``dataset`` or load its token ids from the on-disk cache.

    Parameters
    ----------
    tokenizer : transformers tokenizer
        Called as ``tokenizer(texts_a, texts_b, truncation=True, max_length=max_length)``.
    dataset : TextDataset
    max_length : int
        Truncation length in tokens (special tokens included).
    cache_dir : path or None
        None: :func:`default_cache_dir`.
    model_key : str
        Identifies the tokenizer (e.g. the model name); part of the cache key.
    split : str
        "train", "test", ...; part of the cache key.
    """
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = cache_path(directory, dataset, model_key=model_key, split=split, max_length=max_length)
    if path.is_file():
        try:
            loaded = _load(path)
        except Exception as exc:  # noqa: BLE001 -- a corrupt/partial file is re-made, same result
            log.warning("token cache %s unreadable (%s); tokenising again", path, exc)
        else:
            if len(loaded) == len(dataset):
                log.debug("token cache hit %s", path)
                return loaded
            log.warning("token cache %s has %d rows, expected %d; tokenising again", path, len(loaded), len(dataset))
    out = tokenize(tokenizer, dataset, max_length=max_length)
    try:
        _save_atomic(path, out)
        log.debug("token cache written %s", path)
    except OSError as exc:  # caching is an optimisation: results are unchanged without it
        log.warning("could not write token cache %s (%s); continuing without it", path, exc)
    return out


def _save_atomic(path: Path, ds: TokenizedDataset) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "input_ids": ds.input_ids.numpy(),
        "lengths": ds.lengths.numpy(),
        "labels": ds.labels.numpy(),
        "pad_id": np.asarray(ds.pad_id, dtype=np.int64),
    }
    if ds.token_type_ids is not None:
        arrays["token_type_ids"] = ds.token_type_ids.numpy()
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: Path) -> TokenizedDataset:
    with np.load(path, allow_pickle=False) as z:
        tt = z["token_type_ids"] if "token_type_ids" in z.files else None
        return _to_torch(z["input_ids"], z["lengths"], z["labels"], tt, int(z["pad_id"]))


def collate(ds: TokenizedDataset, indices: Sequence[int] | np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
    """A model-ready batch of the rows ``indices``, padded only to the batch's longest row.

    Returns
    -------
    dict
        ``input_ids`` (B, L_b) int64, ``attention_mask`` (B, L_b) int64 (1 on real tokens),
        ``labels`` (B,) int64 and, where stored, ``token_type_ids`` (B, L_b) int64;
        :math:`L_b = \\max_{i \\in \\text{batch}} \\text{length}_i`.
    """
    idx = torch.as_tensor(np.asarray(indices, dtype=np.int64) if not torch.is_tensor(indices) else indices)
    idx = idx.to(torch.long).reshape(-1)
    if idx.numel() == 0:
        raise DataError("collate got an empty batch; fix: pass at least one index")
    lengths = ds.lengths[idx]  # (B,)
    width = int(lengths.max())
    batch = {
        "input_ids": ds.input_ids[idx, :width].to(torch.long),  # (B, L_b)
        "attention_mask": (torch.arange(width)[None, :] < lengths[:, None]).to(torch.long),  # (B, L_b)
        "labels": ds.labels[idx],  # (B,)
    }
    if ds.token_type_ids is not None:
        batch["token_type_ids"] = ds.token_type_ids[idx, :width].to(torch.long)
    return batch
