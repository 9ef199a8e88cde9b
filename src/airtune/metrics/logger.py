"""JSON Lines files: durable appends, tolerant reads, atomic truncation for resume.

One JSON object per line, UTF-8, ``\\n``-terminated. Values go through
:func:`airtune.metrics.records.to_jsonable` (NaN/inf -> ``null``) and are dumped with
``allow_nan=False``, so every line is strict JSON.

A process killed mid-write can leave a last line without its ``\\n``. :func:`read_jsonl`
ignores such a line when it does not parse, :func:`truncate_jsonl` drops it, and
:class:`JsonlWriter` cuts it off before appending (each logged with a warning).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from airtune.errors import DataError
from airtune.metrics.records import to_jsonable

__all__ = ["JsonlWriter", "read_jsonl", "truncate_jsonl"]

log = logging.getLogger(__name__)


def _dumps(record: Any) -> str:
    return json.dumps(to_jsonable(record), allow_nan=False, ensure_ascii=False, separators=(",", ":"))


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort: not every OS lets a directory be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _parse_lines(path: Path, data: bytes) -> tuple[list[dict[str, Any]], int]:
    """Parse ``data``; return the records and the byte length of the well-formed prefix.

    A trailing line without ``\\n`` that does not parse is a partial write: it is left out of
    both. A malformed line anywhere else raises :class:`DataError`.
    """
    records: list[dict[str, Any]] = []
    pos = 0
    lineno = 0
    while pos < len(data):
        lineno += 1
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl + 1
        line = data[pos:end].strip()
        if line:
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                if nl < 0:  # trailing partial line from a killed writer
                    log.warning("%s: ignoring partial last line %d (%d bytes)", path, lineno, end - pos)
                    return records, pos
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc}); fix: delete or repair that line") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}; fix: one object per line")
            records.append(obj)
        pos = end
    return records, pos


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read every object of a JSON Lines file (a trailing partial line is ignored, with a warning).

    Raises
    ------
    DataError
        The file is missing, or a line other than the last is not a JSON object.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{p}: file not found; fix: pass a run directory written by `airtune run --out`") from None
    return _parse_lines(p, data)[0]


def truncate_jsonl(path: str | os.PathLike[str], keep: Callable[[dict[str, Any]], bool]) -> int:
    """Rewrite ``path`` atomically, keeping only the records for which ``keep(record)`` is true.

    Used by resume to drop the rounds logged after the last checkpoint, e.g.
    ``truncate_jsonl(run / "metrics.jsonl", lambda r: r["round"] <= last_ckpt_round)``.
    A trailing partial line is dropped. The new content is written to a temporary file in the
    same directory, fsynced, then ``os.replace``-d over ``path``, so a crash leaves either the
    old or the new file, never a mix. A missing file is left missing.

    Returns
    -------
    int
        Number of records kept.
    """
    p = Path(path)
    if not p.exists():
        return 0
    kept = [r for r in read_jsonl(p) if keep(r)]
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for r in kept:
                f.write(_dumps(r) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(p.parent)
    return len(kept)


class JsonlWriter:
    """Append JSON objects to a ``.jsonl`` file, one per line, durable per batch.

    ``write_many`` (one call per round) writes all lines, then flushes and ``os.fsync``-s, so a
    killed run loses at most the round in flight. Records may be dicts or objects with
    ``to_dict()`` (:class:`RoundRecord`, :class:`ClientRecord`).

    Example::

        with JsonlWriter(run_dir / "metrics.jsonl") as w:
            w.write(round_record)
        with JsonlWriter(run_dir / "clients.jsonl") as w:
            w.write_many(client_records)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_partial_tail()
        self._f = open(self.path, "a", encoding="utf-8", newline="\n")

    def _drop_partial_tail(self) -> None:
        """Cut a trailing line without ``\\n`` (left by a killed writer) so appends stay line-aligned."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
            f.seek(0)
            data = f.read()
            cut = data.rfind(b"\n") + 1
            tail = data[cut:]
            try:
                json.loads(tail)
            except (json.JSONDecodeError, UnicodeDecodeError):
                log.warning("%s: dropping partial last line (%d bytes) before appending", self.path, len(tail))
                f.truncate(cut)
            else:  # a complete record that only lacks its newline
                f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())

    def write(self, record: Any) -> None:
        """Append one record and make it durable."""
        self.write_many([record])

    def write_many(self, records: Iterable[Any]) -> None:
        """Append several records (one round's batch), then flush and fsync once."""
        if self._f.closed:
            raise ValueError(f"JsonlWriter({self.path}) is closed")
        self._f.write("".join(_dumps(r) + "\n" for r in records))
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    @property
    def closed(self) -> bool:
        return self._f.closed

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JsonlWriter({str(self.path)!r})"
