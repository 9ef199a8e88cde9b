"""Checkpoint of a whole run after every round, written atomically.

Layout of ``RUN_DIR/checkpoint/``: ``state.pt`` (round, server tensors and strategy extras,
cumulative counters, torch RNG state, config hash) and ``adapter/`` (the global adapter in PEFT
format, loadable with ``PeftModel.from_pretrained``; absent for full fine-tuning). A new
checkpoint is built in ``checkpoint.tmp`` and swapped in with renames, so a process killed at
any instant leaves either the previous or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

import torch

NAME = "checkpoint"


def save_checkpoint(run_dir: Path, payload: dict[str, Any],
                    write_adapter: Callable[[Path], None] | None = None) -> Path:
    """Write ``payload`` (and optionally the PEFT adapter) as the run's checkpoint."""
    final, tmp, old = run_dir / NAME, run_dir / f"{NAME}.tmp", run_dir / f"{NAME}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(payload, tmp / "state.pt")
    if write_adapter is not None:
        write_adapter(tmp / "adapter")
    _fsync_dir(tmp)
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(run_dir)
    return final


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The last complete checkpoint, or None if the run never finished a round.

    A kill between the two renames leaves only ``checkpoint.old``: it is complete and is used.
    """
    for name in (NAME, f"{NAME}.old"):
        path = run_dir / name / "state.pt"
        if path.exists():
            return torch.load(path, weights_only=False)
    return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
