"""Tasks are plain data: regularisers are named and rebuilt from the registry, memos hold JSON
scalars only, so a task can be written down and sent to another process."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from airtune.errors import RegistryError
from airtune.registry import REGULARIZERS
from airtune.strategies.hetlora import TailPenalty
from airtune.strategies.soft import OrthPenalty
from airtune.training.engine import ClientTask, ClientUpdate
from airtune.training.regularizers import RegularizerSpec


def test_spec_is_sorted_plain_data_and_rebuilds_the_registered_callable():
    spec = RegularizerSpec.of("hetlora_tail", weight=0.5, gamma=0.9)
    assert spec.params == (("gamma", 0.9), ("weight", 0.5))
    assert json.loads(json.dumps(dataclasses.asdict(spec))) == {"name": "hetlora_tail",
                                                               "params": [["gamma", 0.9], ["weight", 0.5]]}
    assert spec.build() == TailPenalty(gamma=0.9, weight=0.5)
    assert RegularizerSpec.of("soft_orthogonality", weight=0.1).build() == OrthPenalty(weight=0.1)
    assert {"hetlora_tail", "soft_orthogonality"} <= set(REGULARIZERS.names())


def test_unknown_or_non_finite_regularizers_fail_in_one_line():
    with pytest.raises(RegistryError, match="unknown regulariser 'l2': choose one of"):
        RegularizerSpec.of("l2", weight=1.0).build()
    with pytest.raises(ValueError, match=r"parameters \['weight'\] are not finite"):
        RegularizerSpec.of("soft_orthogonality", weight=float("nan"))


def test_memo_holds_json_scalars_and_numpy_scalars_become_python():
    t = ClientTask(0, {}, 1, 0, memo={"soft_keep": np.int64(3), "ref": None, "ratio": np.float64(0.25)})
    assert t.memo == {"soft_keep": 3, "ref": None, "ratio": 0.25} and type(t.memo["soft_keep"]) is int
    with pytest.raises(TypeError, match=r"ClientTask.memo\['x'\] = Tensor"):
        ClientTask(0, {}, 1, 0, memo={"x": torch.zeros(1)})
    with pytest.raises(TypeError, match=r"ClientUpdate.memo\['y'\] = list"):
        ClientUpdate(0, {}, 1, 0.0, memo={"y": [1, 2]})


def test_every_task_field_is_serialisable_kind():
    """The fields a codec must carry: tensors (dicts of), names, scalars, one spec (issue 16)."""
    kinds = {f.name: f.type for f in dataclasses.fields(ClientTask)}
    assert "extra_loss" not in kinds and "info" not in kinds
    assert set(kinds) == {"device", "state", "steps", "seed", "adapter", "rank", "freeze", "base_delta", "loop",
                          "downlink", "chain", "regularizer", "receive", "memo", "lr_scale"}
