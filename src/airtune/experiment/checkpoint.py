"""Checkpoint of a whole run after every round: no pickle, written atomically, verified on load.

Layout of ``RUN_DIR/checkpoint/``:

``state.json``
    round, cumulative counters, planner and strategy state, RNG state, config hash: the tree of
    :mod:`airtune.experiment.state_codec` (plain JSON).
``tensors.safetensors``
    every tensor and array the tree refers to (server tensors, strategy extras, RNG state).
``adapter/``
    the global adapter in PEFT format, loadable with ``PeftModel.from_pretrained`` (absent for
    full fine-tuning); resume does not read it.
``checksums.json``
    SHA-256 of every other file, written last.

A new checkpoint is built in ``checkpoint.tmp``, every file fsynced, then swapped in with renames;
the previous one stays as ``checkpoint.old``. A process killed at any instant leaves a complete
``checkpoint`` or a complete ``checkpoint.old``. Loading verifies the checksums before parsing
anything; a truncated, corrupt or tampered ``checkpoint`` falls back to ``checkpoint.old`` (the
round before, logged), and when neither is usable the error names the file and the fix. Loading
never executes code: JSON and safetensors only describe data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airtune.errors import ResumeError
from airtune.experiment.state_codec import StateFormatError, decode, encode

NAME = "checkpoint"
STATE, TENSORS, CHECKSUMS = "state.json", "tensors.safetensors", "checksums.json"
FORMAT = 1

log = logging.getLogger("airtune")

__all__ = [
    "CheckpointCorrupt",
    "load_checkpoint",
    "save_checkpoint",
    "sha256_file",
]


class CheckpointCorrupt(ResumeError):
    """A checkpoint folder exists but cannot be used (truncated, corrupt, tampered or foreign)."""


def save_checkpoint(run_dir: Path, payload: dict[str, Any],
                    write_adapter: Callable[[Path], None] | None = None) -> Path:
    """Write ``payload`` (plain data, arrays and tensors) and optionally the PEFT adapter."""
    from safetensors.torch import save_file

    final, tmp, old = run_dir / NAME, run_dir / f"{NAME}.tmp", run_dir / f"{NAME}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tree, tensors = encode(payload)
    _write_text(tmp / STATE, json.dumps({"format": FORMAT, "state": tree}, allow_nan=False))
    save_file(tensors, str(tmp / TENSORS), metadata={"format": "pt", "airtune_checkpoint": str(FORMAT)})
    if write_adapter is not None:
        write_adapter(tmp / "adapter")
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    _write_text(tmp / CHECKSUMS, json.dumps(
        {"format": FORMAT, "sha256": {p.relative_to(tmp).as_posix(): sha256_file(p) for p in files}}, indent=1))
    for p in [*files, tmp / CHECKSUMS]:
        _fsync_file(p)
    for d in sorted({p.parent for p in files} | {tmp}, key=lambda d: -len(d.parts)):
        _fsync_dir(d)
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(run_dir)
    return final


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The last usable checkpoint's payload, or None if the run never finished a round.

    ``checkpoint`` first; if it is missing (a kill between the two renames) or unusable,
    ``checkpoint.old`` (logged). Raises :class:`CheckpointCorrupt` when a checkpoint exists but
    none is usable.
    """
    errors: list[CheckpointCorrupt] = []
    for name in (NAME, f"{NAME}.old"):
        folder = run_dir / name
        if not folder.exists():
            continue
        try:
            payload = read_checkpoint(folder)
        except CheckpointCorrupt as exc:
            log.warning("%s", exc)
            errors.append(exc)
            continue
        if errors:
            log.warning("resuming from %s (round %s) because %s/ is unusable", folder, payload.get("round"), NAME)
        return payload
    if errors:
        raise CheckpointCorrupt(f"{errors[0]}; no usable {NAME}.old either; fix: start a new run with "
                                f"`airtune run CONFIG --out NEW_DIR` (or restore {run_dir / NAME} from a backup)")
    return None


def read_checkpoint(folder: Path) -> dict[str, Any]:
    """Verify and decode one checkpoint folder; :class:`CheckpointCorrupt` names the bad file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    sums_path = folder / CHECKSUMS
    sums = _read_json(sums_path)
    expected = sums.get("sha256") if isinstance(sums, dict) else None
    if not isinstance(expected, dict) or STATE not in expected or TENSORS not in expected:
        raise CheckpointCorrupt(f"{sums_path}: not an airtune checkpoint manifest (no sha256 of {STATE}, {TENSORS})")
    for rel, digest in expected.items():
        path = folder / rel
        if not path.is_file():
            raise CheckpointCorrupt(f"{path}: missing from the checkpoint")
        if sha256_file(path) != digest:
            raise CheckpointCorrupt(f"{path}: checksum mismatch (truncated, corrupt or modified)")
    doc = _read_json(folder / STATE)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or "state" not in doc:
        raise CheckpointCorrupt(f"{folder / STATE}: not an airtune checkpoint of format {FORMAT}")
    try:
        tensors = load_file(str(folder / TENSORS))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointCorrupt(f"{folder / TENSORS}: unreadable ({exc})") from exc
    try:
        payload = decode(doc["state"], tensors)
    except StateFormatError as exc:
        raise CheckpointCorrupt(f"{folder / STATE}: {exc}") from exc
    if not isinstance(payload, dict) or "round" not in payload:
        raise CheckpointCorrupt(f"{folder / STATE}: holds no round")
    return payload


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointCorrupt(f"{path}: missing from the checkpoint") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointCorrupt(f"{path}: not valid JSON ({exc.__class__.__name__})") from exc


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    _fsync_file(path)   # a directory is fsynced through a read-only descriptor, like a file
