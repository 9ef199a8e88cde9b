"""Records and JSONL files: NaN -> null, extra-key collisions, durable append, truncation for resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from airtune.errors import DataError
from airtune.metrics import (
    CLIENT_FIELDS,
    ClientRecord,
    JsonlWriter,
    RoundRecord,
    read_jsonl,
    records_from_arrays,
    truncate_jsonl,
)


def round_record(rnd: int = 0, **kw) -> RoundRecord:
    base = dict(
        round=rnd, sim_time_s=1.5 * (rnd + 1), round_latency_s=1.5, accuracy=None, loss=None,
        train_loss=0.7, uplink_bits=1000, downlink_bits=2000, energy_j=0.5,
        cum_uplink_bits=1000 * (rnd + 1), cum_downlink_bits=2000 * (rnd + 1), cum_energy_j=0.5 * (rnd + 1),
        selected=np.array([0, 2, 3]), delivered=[0, 3], lost=[2], wall_time_s=0.01,
    )
    base.update(kw)
    return RoundRecord(**base)


def client_arrays(k: int = 4) -> dict:
    return dict(
        selected=np.array([True, False, True, True]), delivered=np.array([True, False, False, True]),
        distance_m=np.linspace(10, 100, k), channel_gain=np.full(k, 1e-9), bandwidth_hz=np.array([1e6, 0, 1e6, 2e6]),
        power_w=np.full(k, 0.1), rate_bps=np.array([1e6, np.nan, 2e6, np.inf]), sinr=np.array([3.0, 0, 1.0, 7.0]),
        capacity_bps=np.array([2e6, 0, 1e6, 6e6]), payload_bits=np.array([8e5, 0, 8e5, 8e5]),
        downlink_bits=np.full(k, 1000, dtype=np.int64), compute_s=np.full(k, 0.2, dtype=np.float32),
        server_s=np.zeros(k),
        comm_s=np.array([0.8, 0.0, 0.4, 0.4]), energy_j=np.full(k, 0.05), success_prob=np.array([0.9, 1.0, 0.5, 0.99]),
        num_samples=np.array([32, 0, 16, 8]), train_loss=[0.5, None, 0.6, float("nan")],
    )


def test_round_record_flattens_extra_and_normalises_lists():
    d = round_record(extra={"queue_len": np.float64(0.25), "ranks": np.array([4, 8])}).to_dict()
    assert d["queue_len"] == 0.25 and d["ranks"] == [4, 8]
    assert d["selected"] == [0, 2, 3] and all(type(x) is int for x in d["selected"])
    assert "extra" not in d
    json.dumps(d, allow_nan=False)
    back = RoundRecord.from_dict(d)
    assert back.extra == {"queue_len": 0.25, "ranks": [4, 8]} and back.round == 0


def test_extra_key_collision_raises():
    with pytest.raises(ValueError, match="accuracy"):
        round_record(extra={"accuracy": 0.9})


def test_nan_and_inf_serialise_as_null():
    d = round_record(loss=float("nan"), accuracy=np.float32("inf"), extra={"obj": [1.0, float("-inf")]}).to_dict()
    assert d["loss"] is None and d["accuracy"] is None and d["obj"] == [1.0, None]
    c = ClientRecord(0, 1, False, False, 10.0, 1e-9, 0.0, 0.1, float("nan"), 0.0, 0.0, 0, 0, 0.0, 0.0, 0.0, 0.0, 1.0, 0,
                     None)
    assert c.to_dict()["rate_bps"] is None
    assert "NaN" not in json.dumps(c.to_dict())


def test_records_from_arrays_python_types():
    recs = records_from_arrays(np.int64(3), client_arrays())
    assert len(recs) == 4
    d = recs[0].to_dict()
    assert list(d) == list(CLIENT_FIELDS)
    assert d["round"] == 3 and d["device"] == 0 and d["payload_bits"] == 800000
    assert type(d["selected"]) is bool and type(d["num_samples"]) is int and type(d["compute_s"]) is float
    assert recs[1].to_dict()["rate_bps"] is None and recs[3].to_dict()["rate_bps"] is None
    assert recs[1].train_loss is None and math.isnan(recs[3].train_loss) and recs[3].to_dict()["train_loss"] is None
    json.dumps([r.to_dict() for r in recs], allow_nan=False)


def test_records_from_arrays_rejects_bad_input():
    arr = client_arrays()
    with pytest.raises(ValueError, match="missing"):
        records_from_arrays(0, {k: v for k, v in arr.items() if k != "rate_bps"})
    with pytest.raises(ValueError, match="shape"):
        records_from_arrays(0, {**arr, "power_w": np.ones(3)})


def test_writer_appends_and_reader_round_trips(tmp_path):
    p = tmp_path / "run" / "metrics.jsonl"
    with JsonlWriter(p) as w:
        w.write(round_record(0))
        w.write_many([round_record(1).to_dict(), {"round": 2, "x": float("nan")}])
    assert w.closed
    rows = read_jsonl(p)
    assert [r["round"] for r in rows] == [0, 1, 2] and rows[2]["x"] is None


def test_truncate_keeps_matching_rows_and_drops_partial_line(tmp_path):
    p = tmp_path / "metrics.jsonl"
    with JsonlWriter(p) as w:
        w.write_many([{"round": r, "accuracy": 0.1 * r} for r in range(5)])
    with open(p, "a") as f:
        f.write('{"round": 5, "accur')  # killed mid-write
    assert [r["round"] for r in read_jsonl(p)] == [0, 1, 2, 3, 4]
    assert truncate_jsonl(p, lambda r: r["round"] <= 2) == 3
    text = p.read_text()
    assert text.endswith("\n") and "accur\n" not in text
    assert [r["round"] for r in read_jsonl(p)] == [0, 1, 2]
    assert list(tmp_path.iterdir()) == [p]  # no temp file left behind
    assert truncate_jsonl(tmp_path / "absent.jsonl", lambda r: True) == 0


def test_writer_cuts_partial_tail_before_appending(tmp_path):
    p = tmp_path / "clients.jsonl"
    p.write_text('{"round": 0}\n{"round": 1, "dev')
    with JsonlWriter(p) as w:
        w.write({"round": 1})
    assert read_jsonl(p) == [{"round": 0}, {"round": 1}]


def test_corrupt_middle_line_is_an_error(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"round": 0}\nnot json\n{"round": 1}\n')
    with pytest.raises(DataError, match=r"metrics.jsonl:2"):
        read_jsonl(p)
