"""Client tasks and updates <-> Flower records, generically over their dataclass fields. No pickle.

A message carries a list of :class:`~airtune.training.engine.ClientTask` (or, in the reply,
:class:`~airtune.training.engine.ClientUpdate`) as two records:

``"arrays"`` (ArrayRecord)
    Every tensor the items hold, keyed ``t0``, ``t1``, ... and de-duplicated by content: the
    tasks of a shard share one copy of the global state.
``"items"`` (ConfigRecord)
    ``{"json": ...}``: the items as JSON, field by field (``dataclasses.fields``), where a tensor
    is ``{"__tensor__": "t3"}`` (bfloat16 travels as its int16 bit pattern, ``"dtype": "bfloat16"``), a nested
    dataclass (``RegularizerSpec``, ``LinkTraffic``) a JSON object of its fields, a tuple a
    JSON list. Decoding rebuilds each field from its type annotation, so a new field of
    ``ClientTask`` travels without a change here as long as its type is made of tensors,
    JSON scalars, tuples, lists, dicts with string keys and dataclasses of those.

Anything else (a Python callable, an object) is refused at encoding time with the field's path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from airtune.training.engine import ClientTask, ClientUpdate

ARRAYS, ITEMS = "arrays", "items"
_TENSOR = "__tensor__"
T = TypeVar("T")


class CodecError(TypeError):
    """A task or update holds a value that cannot cross the wire, or a message is malformed."""


def encode(items: Sequence[Any]) -> RecordDict:
    """A ``RecordDict`` holding ``items`` (dataclass instances of one type)."""
    table: dict[str, torch.Tensor] = {}
    seen: dict[tuple, str] = {}
    plain = [_to_plain(it, f"{type(it).__name__}[{i}]", table, seen) for i, it in enumerate(items)]
    arrays = ArrayRecord({k: Array(_to_numpy(v)) for k, v in table.items()})
    text = json.dumps(plain, separators=(",", ":"), allow_nan=True)
    return RecordDict({ARRAYS: arrays, ITEMS: ConfigRecord({"json": text})})


def decode(content: RecordDict, cls: type[T]) -> list[T]:
    """The items :func:`encode` wrote, rebuilt as instances of ``cls``."""
    try:
        arrays, text = content.array_records[ARRAYS], content.config_records[ITEMS]["json"]
    except KeyError as exc:
        raise CodecError(f"message lacks the airtune record {exc}; is the sender an airtune node?") from None
    table = {k: _to_tensor(arr.numpy()) for k, arr in arrays.items()}
    plain = json.loads(str(text))
    return [_from_plain(cls, _resolve(p, table), f"{cls.__name__}[{i}]") for i, p in enumerate(plain)]


def encode_tasks(tasks: Sequence[ClientTask]) -> RecordDict:
    return encode(tasks)


def decode_tasks(content: RecordDict) -> list[ClientTask]:
    return decode(content, ClientTask)


def encode_updates(updates: Sequence[ClientUpdate]) -> RecordDict:
    return encode(updates)


def decode_updates(content: RecordDict) -> list[ClientUpdate]:
    return decode(content, ClientUpdate)


# --------------------------------------------------------------------------------- encoding

def _to_plain(obj: Any, path: str, table: dict[str, torch.Tensor], seen: dict[tuple, str]) -> Any:
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj  # NaN/inf: JSON with allow_nan on both ends (one codec writes and reads)
    if isinstance(obj, np.generic):
        return _to_plain(obj.item(), path, table, seen)
    if isinstance(obj, torch.Tensor):
        ref = {_TENSOR: _store(obj, table, seen)}
        return {**ref, "dtype": "bfloat16"} if obj.dtype == torch.bfloat16 else ref
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_plain(getattr(obj, f.name), f"{path}.{f.name}", table, seen)
                for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [_to_plain(v, f"{path}[{i}]", table, seen) for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        bad = [k for k in obj if not isinstance(k, str)]
        if bad or _TENSOR in obj:
            raise CodecError(f"{path}: dict keys must be strings other than {_TENSOR!r}, got {bad[:3] or _TENSOR}")
        return {k: _to_plain(v, f"{path}.{k}", table, seen) for k, v in obj.items()}
    what = "a Python callable" if callable(obj) else f"a {type(obj).__name__}"
    raise CodecError(f"{path} is {what}, which cannot be sent to a Flower node; fix: make it data "
                     "(tensors, numbers, strings, tuples, dicts, dataclasses; a regulariser is a RegularizerSpec)")


def _store(t: torch.Tensor, table: dict[str, torch.Tensor], seen: dict[tuple, str]) -> str:
    t = t.detach().cpu().contiguous()
    raw = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
    digest = hashlib.blake2b(raw.numpy().tobytes(), digest_size=16).digest() if raw.numel() else b""
    key = (str(t.dtype), tuple(t.shape), digest)
    if key not in seen:
        seen[key] = f"t{len(table)}"
        table[seen[key]] = t
    return seen[key]


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype == torch.bfloat16:  # NumPy has no bfloat16: its bit pattern (the reference says bfloat16)
        return t.view(torch.int16).numpy()
    return t.numpy()


# --------------------------------------------------------------------------------- decoding

def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr))


def _resolve(node: Any, table: dict[str, torch.Tensor]) -> Any:
    """Replace ``{"__tensor__": key}`` by the tensor (shared between items that share it)."""
    if isinstance(node, list):
        return [_resolve(v, table) for v in node]
    if isinstance(node, dict):
        if _TENSOR in node:
            key = node[_TENSOR]
            if key not in table:
                raise CodecError(f"message refers to tensor {key!r}, which it does not carry")
            return table[key].view(torch.bfloat16) if node.get("dtype") == "bfloat16" else table[key]
        return {k: _resolve(v, table) for k, v in node.items()}
    return node


def _from_plain(tp: Any, value: Any, path: str) -> Any:
    """``value`` (JSON with tensors resolved) as the type ``tp`` of a dataclass field."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        rest = [a for a in args if a is not type(None)]
        return _from_plain(rest[0], value, path) if len(rest) == 1 else value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise CodecError(f"{path}: expected an object for {tp.__name__}, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        known = {f.name for f in dataclasses.fields(tp)}
        if set(value) - known:
            raise CodecError(f"{path}: fields {sorted(set(value) - known)} are not fields of {tp.__name__}; "
                             "fix: the same airtune version on the server and the nodes")
        return tp(**{k: _from_plain(hints[k], v, f"{path}.{k}") for k, v in value.items()})
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_plain(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        return tuple(_from_plain(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is list and args:
        return [_from_plain(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Mapping, typing.Mapping) or tp in (dict, Mapping):
        vt = args[1] if len(args) == 2 else Any
        return {k: _from_plain(vt, v, f"{path}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, float) and math.isnan(value):
        return value
    return value
