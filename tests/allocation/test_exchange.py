"""The typed planner <-> strategy exchange: records validate their shapes, every registered
component declares only real kinds, and what a component sends is what it declared."""

from __future__ import annotations

import numpy as np
import pytest

from airtune.allocation.exchange import (
    Directives,
    Hints,
    ModuleDirective,
    ModuleSetHint,
    SoftPayloadHint,
    SparsityDirective,
    directive_kinds,
    hint_kinds,
)
from airtune.experiment.validate import declaration_errors, exchange_error
from airtune.registry import ALLOCATORS, STRATEGIES


def test_kinds_are_the_fields_present():
    assert directive_kinds() == {"sparsity", "modules"} and hint_kinds() == {"soft_payload", "modules", "dissimilarity"}
    assert Directives().kinds() == frozenset() and Hints().kinds() == frozenset()
    d = Directives(sparsity=SparsityDirective(np.array([1.0, 0.25])))
    assert d.kinds() == {"sparsity"}
    h = Hints(soft_payload=SoftPayloadHint(2, np.array([0.0, 5.0, 9.0])),
              modules=ModuleSetHint((2, 4), np.array([1e3, 2e3])))
    assert h.kinds() == {"soft_payload", "modules"}


def test_records_are_read_only_copies_and_check_shapes():
    ratio = np.array([1.0, 0.5])
    d = SparsityDirective(ratio)
    ratio[0] = 0.0
    assert d.keep_ratio.tolist() == [1.0, 0.5] and not d.keep_ratio.flags.writeable
    with pytest.raises(ValueError, match=r"keep_ratio must lie in \[0, 1\]"):
        SparsityDirective(np.array([1.5]))
    assert ModuleDirective(np.array([0, -1, 2])).modules.dtype == np.int64
    assert ModuleDirective(np.eye(2)).modules.dtype == bool
    with pytest.raises(ValueError, match=r"payload_bits must have shape \(3,\)"):
        SoftPayloadHint(2, np.zeros(4))
    with pytest.raises(ValueError, match=r"error_curve must end in 3 values"):
        SoftPayloadHint(2, np.zeros(3), error_curve=np.zeros((5, 4)))
    assert SoftPayloadHint(2, np.zeros(3), error_curve=np.zeros((5, 3))).error_curve.shape == (5, 3)  # per device
    with pytest.raises(ValueError, match=r"ModuleSetHint.payload_bits must have shape \(2,\)"):
        ModuleSetHint((2, 4), np.zeros(3))


def test_every_registered_component_declares_real_kinds():
    assert declaration_errors(STRATEGIES.names(), "strategy", STRATEGIES.get) == []
    assert declaration_errors(ALLOCATORS.names(), "allocator", ALLOCATORS.get) == []

    class Typo:
        directives = frozenset({"keep_ratio"})

    (line,) = declaration_errors(["typo"], "allocator", lambda name: Typo)
    assert "allocator 'typo' declares directives ['keep_ratio']" in line and "fix: use names from" in line


def test_sending_an_undeclared_kind_is_one_line_naming_it():
    assert exchange_error(frozenset({"sparsity"}), frozenset({"sparsity"}), "allocator 'tsfa'", "directives") is None
    msg = exchange_error(frozenset({"modules"}), frozenset(), "strategy 'x'", "hints")
    assert msg == ("strategy 'x' sent hints ['modules'] but declares only []; fix: add them to its declaration "
                   "(provides_hints) or stop sending them")
