"""The records a run writes: one :class:`RoundRecord` per round, one :class:`ClientRecord` per device per round.

A record is a frozen dataclass; ``to_dict()`` gives the JSON-ready dict that the logger writes
as one line of ``metrics.jsonl`` (rounds) or ``clients.jsonl`` (devices).

JSON conventions (shared by every record and by :class:`airtune.metrics.logger.JsonlWriter`):

- NaN and +/-inf are written as ``null``: strict JSON has no literal for them, and Python's
  ``NaN``/``Infinity`` extension breaks other readers (``jq``, browsers, pandas with
  ``engine="pyarrow"``). A reader therefore sees ``None`` both for "not measured" and for
  "not a finite number".
- numpy scalars and arrays become Python ``int``/``float``/``bool`` and lists.
- Units are in the field names (``_s`` seconds, ``_j`` joules, ``_bits``, ``_hz``, ``_w``, ``_m``,
  ``_bps`` bits per second).

Example::

    rec = RoundRecord(round=0, sim_time_s=1.2, round_latency_s=1.2, accuracy=None, ...,
                      extra={"lyapunov_queue": 0.3})
    rec.to_dict()["lyapunov_queue"]  # extra keys are flattened to the top level
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "RoundRecord",
    "ClientRecord",
    "records_from_arrays",
    "to_jsonable",
    "ROUND_FIELDS",
    "CLIENT_FIELDS",
]


def to_jsonable(obj: Any) -> Any:
    """Return ``obj`` as plain JSON types: NaN/inf -> ``None``, numpy -> Python, tuples/arrays -> lists.

    Objects with a ``to_dict()`` method (the records) are converted through it; ``Path`` becomes
    ``str``; dict keys become ``str``. Anything else that ``json`` cannot hold raises ``TypeError``
    when it is dumped, not here.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, int):
        return obj
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict())
    return obj


def _int_list(xs: Sequence[Any] | np.ndarray | None) -> list[int]:
    if xs is None:
        return []
    return [int(x) for x in np.asarray(xs).reshape(-1).tolist()]


@dataclass(frozen=True)
class RoundRecord:
    """What happened in one communication round (one line of ``metrics.jsonl``).

    Parameters
    ----------
    round : int
        Round index, 0-based.
    sim_time_s : float
        Cumulative simulated wall-clock time at the end of this round, seconds.
    round_latency_s : float
        Simulated duration of this round, seconds: the largest device latency over every
        *scheduled* device, delivered or not (``wireless.cost.round_latency_s``), where a device's
        latency is compute + edge-server compute (split learning) + uplink + downlink time
        (``wireless.cost.device_latency_s``).
    accuracy : float or None
        Evaluation accuracy in [0, 1] after aggregation; ``None`` when not evaluated this round.
    loss : float or None
        Evaluation loss; ``None`` when not evaluated.
    train_loss : float or None
        Mean local training loss over the delivered updates; ``None`` when nothing was delivered.
    uplink_bits, downlink_bits : int
        Bits sent device -> server and server -> devices in this round (all devices).
    energy_j : float
        Energy spent by all devices in this round (computation + transmission), joules.
    cum_uplink_bits, cum_downlink_bits : int
        Running totals over rounds 0..round.
    cum_energy_j : float
        Running total of ``energy_j``, joules.
    selected : list of int
        Devices scheduled this round.
    delivered : list of int
        Selected devices whose update reached the server.
    lost : list of int
        Selected devices whose update was lost to outage.
    wall_time_s : float
        Real (host) time spent on this round, seconds.
    extra : dict
        Strategy / allocator diagnostics (queue lengths, ranks, objective, ...). Flattened to the
        top level of the JSON object; a key equal to a fixed field raises ``ValueError``.
    """

    round: int
    sim_time_s: float
    round_latency_s: float
    accuracy: float | None
    loss: float | None
    train_loss: float | None
    uplink_bits: int
    downlink_bits: int
    energy_j: float
    cum_uplink_bits: int
    cum_downlink_bits: int
    cum_energy_j: float
    selected: list[int] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    wall_time_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    FIXED: ClassVar[tuple[str, ...]] = ()  # filled in below the class

    def __post_init__(self) -> None:
        for name in ("selected", "delivered", "lost"):
            object.__setattr__(self, name, _int_list(getattr(self, name)))
        extra = dict(self.extra or {})
        bad = sorted(k for k in extra if k in ROUND_FIELDS)
        if bad:
            raise ValueError(
                f"RoundRecord.extra keys {bad} collide with fixed fields; "
                f"fix: rename them (e.g. prefix with the strategy name: 'soft_{bad[0]}')"
            )
        nonstr = [k for k in extra if not isinstance(k, str)]
        if nonstr:
            raise ValueError(f"RoundRecord.extra keys must be str, got {nonstr!r}")
        object.__setattr__(self, "extra", extra)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the fixed fields in order, then ``extra`` flattened; NaN/inf -> ``None``."""
        d: dict[str, Any] = {name: getattr(self, name) for name in ROUND_FIELDS}
        d.update(self.extra)
        return to_jsonable(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RoundRecord:
        """Inverse of :meth:`to_dict`: keys that are not fixed fields go back into ``extra``."""
        fixed = {k: d[k] for k in ROUND_FIELDS if k in d}
        extra = {k: v for k, v in d.items() if k not in ROUND_FIELDS}
        return cls(**fixed, extra=extra)


ROUND_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RoundRecord) if f.name != "extra")
"""Fixed keys of a ``metrics.jsonl`` line (``extra`` keys may not reuse them)."""
RoundRecord.FIXED = ROUND_FIELDS


@dataclass(frozen=True)
class ClientRecord:
    """One device in one round (one line of ``clients.jsonl``), selected or not.

    Parameters
    ----------
    round : int
        Round index, 0-based.
    device : int
        Device index in ``[0, K)``.
    selected : bool
        Scheduled to train and transmit this round.
    delivered : bool
        Its update reached the server (selected and not in outage).
    distance_m : float
        Distance to the base station, metres.
    channel_gain : float
        Linear channel power gain (path loss x fading), dimensionless.
    bandwidth_hz : float
        Uplink bandwidth allocated, Hz (0 when not selected).
    power_w : float
        Transmit power, watts.
    rate_bps : float
        Uplink rate the upload was sent at and charged for, bits per second (the link mode's
        rate, ``wireless/link.py``; 0 when not selected).
    sinr : float
        Realised SINR of the upload (linear; SNR under ``error_free``; 0 when not selected).
    capacity_bps : float
        Largest decodable rate at that SINR, b log2(1 + SINR), bits per second:
        the upload is delivered iff ``rate_bps <= capacity_bps`` (up to a 1e-9 relative tolerance).
    payload_bits : int
        Uplink payload (the update it sends), bits.
    downlink_bits : int
        Bits it received from the server this round.
    compute_s, server_s, comm_s : float
        Local computation time, edge-server computation time spent on its work (split learning;
        else 0) and uplink plus downlink transmission time, seconds.
    energy_j : float
        Energy it spent this round (computation + transmission), joules.
    success_prob : float
        Probability of its delivery event given what the planner saw before the round, in
        [0, 1] (``LinkModel.success_probability``).
    num_samples : int
        Local training examples processed (or held) this round.
    train_loss : float or None
        Its mean local training loss; ``None`` when it did not train.
    rank : int or None
        Its current LoRA rank (heterogeneous-rank strategies); ``None`` without LoRA.

    Notes
    -----
    NaN and +/-inf (an unselected device's rate, a diverged loss) are written as JSON ``null``
    by :meth:`to_dict`, because JSON has no literal for them.
    """

    round: int
    device: int
    selected: bool
    delivered: bool
    distance_m: float
    channel_gain: float
    bandwidth_hz: float
    power_w: float
    rate_bps: float
    sinr: float
    capacity_bps: float
    payload_bits: int
    downlink_bits: int
    compute_s: float
    server_s: float
    comm_s: float
    energy_j: float
    success_prob: float
    num_samples: int
    train_loss: float | None = None
    rank: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field, in order; NaN/inf -> ``None``."""
        return to_jsonable({name: getattr(self, name) for name in CLIENT_FIELDS})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClientRecord:
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        return cls(**{k: d[k] for k in CLIENT_FIELDS if k in d})


CLIENT_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ClientRecord))
"""Keys of a ``clients.jsonl`` line."""

_CLIENT_INT = {"device", "payload_bits", "downlink_bits", "num_samples", "rank"}
_CLIENT_BOOL = {"selected", "delivered"}
_CLIENT_OPTIONAL = {"device", "train_loss", "rank"}


def _column(name: str, values: Any, k: int) -> list[Any]:
    arr = np.asarray(values)
    if arr.ndim == 0:  # a scalar applies to every device
        arr = np.full(k, arr.item(), dtype=arr.dtype if arr.dtype != object else object)
    if arr.shape != (k,):
        raise ValueError(f"records_from_arrays: '{name}' has shape {arr.shape}, expected ({k},)")
    xs = arr.tolist()  # numpy scalars -> Python int/float/bool/None
    if name in _CLIENT_BOOL:
        return [bool(x) for x in xs]
    if name in _CLIENT_INT:
        return [int(round(x)) if x is not None and math.isfinite(x) else None for x in xs]
    return [None if x is None else float(x) for x in xs]


def records_from_arrays(round: int, arrays: Mapping[str, Any]) -> list[ClientRecord]:
    """Build the ``K`` per-device :class:`ClientRecord` of one round from vectorised arrays.

    Parameters
    ----------
    round : int
        Round index, 0-based.
    arrays : mapping of str to array-like, each of shape (K,) (or a scalar, broadcast to all K)
        One entry per :class:`ClientRecord` field except ``round``. ``device`` defaults to
        ``arange(K)``, ``train_loss`` and ``rank`` to ``None``; every other field is required.
        Bits and counts are rounded to ``int``; flags become ``bool``; the rest ``float``.

    Returns
    -------
    list of ClientRecord
        ``K`` records, in array order.

    Raises
    ------
    ValueError
        A required field is missing, a key is unknown, or shapes differ.
    """
    names = set(CLIENT_FIELDS) - {"round"}
    unknown = sorted(set(arrays) - names)
    missing = sorted(names - _CLIENT_OPTIONAL - set(arrays))
    if unknown or missing:
        raise ValueError(
            f"records_from_arrays: unknown keys {unknown}, missing keys {missing}; "
            f"fix: pass exactly the ClientRecord fields {sorted(names)}"
        )
    sizes = {np.asarray(v).shape for v in arrays.values() if np.ndim(v) > 0}
    if len(sizes) != 1 or len(next(iter(sizes))) != 1:
        raise ValueError(f"records_from_arrays: arrays must all have shape (K,), got shapes {sorted(sizes)}")
    (k,) = next(iter(sizes))
    cols = {name: _column(name, v, k) for name, v in arrays.items()}
    if "device" not in cols:
        cols["device"] = list(range(k))
    for name in ("train_loss", "rank"):
        if name not in cols:
            cols[name] = [None] * k
    r = int(round)
    order = [n for n in CLIENT_FIELDS if n != "round"]
    return [ClientRecord(r, *row) for row in zip(*(cols[n] for n in order))]
