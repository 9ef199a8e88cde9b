"""Checkpoint state without pickle: nested plain data as JSON, every array as a named tensor.

:func:`encode` walks a nested state (dicts, lists, tuples, numbers, strings, None, NumPy scalars
and arrays, torch tensors) and returns a JSON-ready tree plus a flat ``name -> tensor`` dict for
safetensors; :func:`decode` inverts it exactly (dtypes, NaN and non-string dict keys included).
Loading the two parts never executes code: JSON and safetensors only describe data.

Tree nodes that are not plain JSON carry the tag key ``"__airtune__"``:

==================  ===============================================================
``tensor``          ``{"key": name}``: a torch tensor in the safetensors file
``ndarray``         ``{"key": name, "dtype": "float64"}``: a NumPy array, stored as a tensor
``np_scalar``       ``{"dtype": "int64", "value": 3}``: a NumPy scalar
``float``           ``{"value": "nan" | "inf" | "-inf"}``: JSON has no non-finite numbers
``tuple``           ``{"items": [...]}``
``dict``            ``{"items": [[key, value], ...]}``: a dict whose keys are not all strings
==================  ===============================================================

Anything else (class instances, callables) is refused with the path of the offending value:
strategies and planners keep plain data in their state (our choice: an explicit, auditable
format instead of pickling arbitrary objects).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["TAG", "StateFormatError", "decode", "encode"]

TAG = "__airtune__"
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class StateFormatError(ValueError):
    """The state cannot be encoded (unsupported type) or the stored tree is malformed."""


def encode(obj: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """``(tree, tensors)``: a JSON-serialisable tree and the tensors it refers to by name."""
    tensors: dict[str, torch.Tensor] = {}
    return _enc(obj, "state", tensors), tensors


def _enc(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int) and not isinstance(obj, np.integer):
        return obj
    if isinstance(obj, float) and not isinstance(obj, np.floating):
        return obj if math.isfinite(obj) else {TAG: "float", "value": repr(obj)}
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {TAG: "tensor", "key": key}
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise StateFormatError(f"{path}: a NumPy array of Python objects cannot be stored; keep numbers")
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(np.array(obj, copy=True, order="C"))  # keeps 0-d shapes
        return {TAG: "ndarray", "key": key, "dtype": obj.dtype.str}
    if isinstance(obj, np.generic):
        return {TAG: "np_scalar", "dtype": obj.dtype.str, "value": _enc(obj.item(), path, tensors)}
    if isinstance(obj, tuple):
        return {TAG: "tuple", "items": [_enc(v, f"{path}[{i}]", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_enc(v, f"{path}[{i}]", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and TAG not in obj:
            return {k: _enc(v, f"{path}.{k}", tensors) for k, v in obj.items()}
        return {TAG: "dict", "items": [[_enc(k, f"{path}<key>", tensors), _enc(v, f"{path}[{k!r}]", tensors)]
                                       for k, v in obj.items()]}
    raise StateFormatError(f"{path}: values of type {type(obj).__name__} cannot be stored in a checkpoint; "
                           "fix: keep plain data (numbers, strings, lists, dicts, arrays, tensors) in the state")


def decode(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Rebuild the state :func:`encode` saw; raises :class:`StateFormatError` on a malformed tree."""
    return _dec(tree, tensors, "state")


def _dec(node: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if node is None or isinstance(node, (bool, str, int, float)):
        return node
    if isinstance(node, list):
        return [_dec(v, tensors, f"{path}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, dict):
        raise StateFormatError(f"{path}: unexpected JSON value of type {type(node).__name__}")
    if TAG not in node:
        return {k: _dec(v, tensors, f"{path}.{k}") for k, v in node.items()}
    try:
        return _dec_tagged(node, tensors, path)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, StateFormatError):
            raise
        raise StateFormatError(f"{path}: malformed {node.get(TAG)!r} entry ({exc.__class__.__name__}: {exc})") from exc


def _dec_tagged(node: dict[str, Any], tensors: dict[str, torch.Tensor], path: str) -> Any:
    kind = node[TAG]
    if kind == "tensor":
        return _tensor(node["key"], tensors, path)
    if kind == "ndarray":
        arr = _tensor(node["key"], tensors, path).numpy()
        dtype = np.dtype(node["dtype"])
        if arr.dtype != dtype:
            raise StateFormatError(f"{path}: stored array has dtype {arr.dtype}, the tree says {dtype}")
        return arr.copy()
    if kind == "np_scalar":
        return np.dtype(node["dtype"]).type(_dec(node["value"], tensors, path))
    if kind == "float":
        if node["value"] not in _NONFINITE:
            raise StateFormatError(f"{path}: {node['value']!r} is not one of {sorted(_NONFINITE)}")
        return _NONFINITE[node["value"]]
    if kind == "tuple":
        return tuple(_dec(v, tensors, f"{path}[{i}]") for i, v in enumerate(node["items"]))
    if kind == "dict":
        out = {}
        for key, value in node["items"]:
            k = _dec(key, tensors, f"{path}<key>")
            out[k] = _dec(value, tensors, f"{path}[{k!r}]")
        return out
    raise StateFormatError(f"{path}: unknown entry kind {kind!r}")


def _tensor(key: str, tensors: dict[str, torch.Tensor], path: str) -> torch.Tensor:
    if key not in tensors:
        raise StateFormatError(f"{path}: tensor {key!r} is missing from the tensor file")
    return tensors[key]
