"""Checkpoints: written atomically with checksums, verified on load, the previous one kept as a
fallback, and a truncated, corrupt or tampered file gives a one-line error naming it."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from airtune.experiment.checkpoint import (
    CHECKSUMS,
    NAME,
    STATE,
    TENSORS,
    CheckpointCorrupt,
    load_checkpoint,
    save_checkpoint,
)


def _payload(rnd: int) -> dict:
    return {"round": rnd, "tensors": {"w": torch.full((3,), float(rnd))}, "extra": {"ranks": np.array([rnd, 2])},
            "totals": {"energy_j": np.float64(rnd / 3)}, "torch_rng": torch.get_rng_state(), "config_hash": "abc"}


def _write_adapter(path):
    path.mkdir()
    (path / "adapter_config.json").write_text("{}")


@pytest.fixture
def run_dir(tmp_path):
    save_checkpoint(tmp_path, _payload(0), _write_adapter)
    save_checkpoint(tmp_path, _payload(1), _write_adapter)
    return tmp_path


def test_round_trip_and_previous_kept(run_dir):
    ck = load_checkpoint(run_dir)
    assert ck["round"] == 1 and torch.equal(ck["tensors"]["w"], torch.full((3,), 1.0))
    assert ck["totals"]["energy_j"] == np.float64(1 / 3) and ck["extra"]["ranks"].dtype == np.array([1]).dtype
    assert (run_dir / f"{NAME}.old" / STATE).exists() and not (run_dir / f"{NAME}.tmp").exists()
    sums = json.loads((run_dir / NAME / CHECKSUMS).read_text())["sha256"]
    assert set(sums) == {STATE, TENSORS, "adapter/adapter_config.json"}
    assert not list(run_dir.rglob("*.pt")) and not list(run_dir.rglob("*.pkl"))


def test_no_checkpoint_is_none(tmp_path):
    assert load_checkpoint(tmp_path) is None


def test_kill_between_renames_uses_old(run_dir):
    (run_dir / NAME).rename(run_dir / f"{NAME}.tmp")    # the state after the first of the two renames
    (run_dir / f"{NAME}.tmp" / STATE).write_text("half-written")
    assert load_checkpoint(run_dir)["round"] == 0


@pytest.mark.parametrize("damage", ["truncate_state", "tamper_state", "truncate_tensors", "delete_tensors",
                                    "garbage_manifest", "tamper_adapter"])
def test_damaged_latest_falls_back_to_old_and_logs(run_dir, damage, caplog):
    _damage(run_dir / NAME, damage)
    with caplog.at_level(logging.WARNING, logger="airtune"):
        ck = load_checkpoint(run_dir)
    assert ck["round"] == 0
    assert any(f"resuming from {run_dir / (NAME + '.old')}" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("damage", ["truncate_state", "tamper_state", "truncate_tensors", "garbage_manifest"])
def test_no_usable_checkpoint_is_a_one_line_error(run_dir, damage):
    _damage(run_dir / NAME, damage)
    _damage(run_dir / f"{NAME}.old", damage)
    with pytest.raises(CheckpointCorrupt) as info:
        load_checkpoint(run_dir)
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and str(run_dir / NAME) in msg and "fix:" in msg


def test_a_pickle_is_never_loaded(run_dir):
    """A state.pt left by an older airtune (a pickle) is not read: the checkpoint is JSON + safetensors."""
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickle executed')",))

    import pickle
    (run_dir / NAME / "state.pt").write_bytes(pickle.dumps(Boom()))
    assert load_checkpoint(run_dir)["round"] == 1


def test_a_consistent_forgery_with_a_foreign_format_is_refused(run_dir):
    from airtune.experiment.checkpoint import sha256_file
    folder = run_dir / NAME
    (folder / STATE).write_text(json.dumps({"format": 99, "state": {}}))
    sums = json.loads((folder / CHECKSUMS).read_text())
    sums["sha256"][STATE] = sha256_file(folder / STATE)
    (folder / CHECKSUMS).write_text(json.dumps(sums))
    with pytest.raises(CheckpointCorrupt, match="format"):
        from airtune.experiment.checkpoint import read_checkpoint
        read_checkpoint(folder)


def _damage(folder, how):
    if how == "truncate_state":
        data = (folder / STATE).read_bytes()
        (folder / STATE).write_bytes(data[: len(data) // 2])
    elif how == "tamper_state":
        doc = json.loads((folder / STATE).read_text())
        doc["state"]["round"] = 7
        (folder / STATE).write_text(json.dumps(doc))
    elif how == "truncate_tensors":
        data = (folder / TENSORS).read_bytes()
        (folder / TENSORS).write_bytes(data[:20])
    elif how == "delete_tensors":
        (folder / TENSORS).unlink()
    elif how == "garbage_manifest":
        (folder / CHECKSUMS).write_bytes(b"\x00\xff not json")
    elif how == "tamper_adapter":
        (folder / "adapter" / "adapter_config.json").write_text('{"r": 64}')
