"""airtune.metrics: the per-round and per-device records a run writes, and the JSONL files that hold them.

Public API::

    RoundRecord, ClientRecord, records_from_arrays, to_jsonable, ROUND_FIELDS, CLIENT_FIELDS
    JsonlWriter, read_jsonl, truncate_jsonl
"""

from airtune.metrics.logger import JsonlWriter, read_jsonl, truncate_jsonl
from airtune.metrics.records import (
    CLIENT_FIELDS,
    ROUND_FIELDS,
    ClientRecord,
    RoundRecord,
    records_from_arrays,
    to_jsonable,
)

__all__ = [
    "RoundRecord",
    "ClientRecord",
    "records_from_arrays",
    "to_jsonable",
    "ROUND_FIELDS",
    "CLIENT_FIELDS",
    "JsonlWriter",
    "read_jsonl",
    "truncate_jsonl",
]
