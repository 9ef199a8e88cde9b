"""The checkpoint codec: nested plain data + tensors round-trip exactly through JSON and safetensors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from airtune.experiment.state_codec import TAG, StateFormatError, decode, encode


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


STATE = {
    "round": 3, "flag": True, "none": None, "name": "r8",
    "floats": [0.1, math.inf, -math.inf, math.nan, 1e-300],
    "np": {"f64": np.float64(0.30000000000000004), "i64": np.int64(-7), "b": np.bool_(True)},
    "arrays": {"f": np.array([1.5, np.nan]), "i": np.arange(6, dtype=np.int32).reshape(2, 3),
               "bool": np.array([True, False]), "zero_d": np.array(2.5), "empty": np.zeros((0, 4))},
    "tensors": {"bf16": torch.randn(3, 2).to(torch.bfloat16), "rng": torch.get_rng_state(),
                "view": torch.arange(12.0).reshape(3, 4)[:, 1]},
    "svd": {"layer": (torch.ones(2, 2), torch.tensor([3.0]), torch.zeros(1, 2))},
    "residual": {0: {"w": torch.ones(2)}, 17: {}},
    "tuple_keys": {(1, "a"): 1},
    TAG: "a key that looks like the tag",
}


def test_round_trip_is_exact():
    tree, tensors = encode(STATE)
    text = json.dumps(tree, allow_nan=False)       # strict JSON: no NaN literals, no pickles
    back = decode(json.loads(text), tensors)
    assert _same(STATE, back)
    assert back["tensors"]["view"].is_contiguous() and back["tensors"]["view"].tolist() == [1.0, 5.0, 9.0]


def test_tensors_are_copies():
    t = torch.zeros(2)
    _, tensors = encode({"t": t})
    t += 1
    assert tensors["t0"].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("bad", [object(), {"a": [1, lambda: 0]}, {"x": np.array([object()])}])
def test_unsupported_values_are_refused_with_their_path(bad):
    with pytest.raises(StateFormatError, match=r"state.*fix|state.*keep numbers"):
        encode(bad)


def test_malformed_trees_are_refused():
    with pytest.raises(StateFormatError, match="missing from the tensor file"):
        decode({TAG: "tensor", "key": "t9"}, {})
    with pytest.raises(StateFormatError, match="unknown entry kind"):
        decode({TAG: "pickle", "payload": "..."}, {})
    with pytest.raises(StateFormatError, match="dtype"):
        decode({TAG: "ndarray", "key": "t0", "dtype": "<f8"}, {"t0": torch.zeros(2, dtype=torch.float32)})
    with pytest.raises(StateFormatError, match="malformed"):
        decode({TAG: "dict", "items": 3}, {})
