"""GLUE loading: real SST-2/QNLI files, seeded splits and subsets, error messages, hub fallback."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from airtune.data import glue
from airtune.data.glue import TextDataset, load_glue, resolve_data_dir, stratified_sample
from airtune.errors import ConfigError, DataError

DATA_DIR = Path(os.environ.get("AIRTUNE_DATA_DIR") or "/work/shared/data/glue")
needs_data = pytest.mark.skipif(
    not (DATA_DIR / "SST-2" / "train.tsv").is_file() or not (DATA_DIR / "QNLI" / "dev.tsv").is_file(),
    reason=f"GLUE TSVs not found under {DATA_DIR} (set AIRTUNE_DATA_DIR to a dir with SST-2/ and QNLI/)",
)


@pytest.fixture(scope="module")
def sst2() -> tuple[TextDataset, TextDataset]:
    return load_glue("sst2", DATA_DIR, seed=0)


@needs_data
def test_sst2_sizes_and_label_counts(sst2):
    train, test = sst2
    assert (len(train), len(test)) == (67_349, 872)
    assert train.class_counts().tolist() == [29_780, 37_569]
    assert test.class_counts().tolist() == [428, 444]
    assert train.texts_b is None and train.num_classes == 2 and train.name == "sst2"
    assert train.labels.dtype == np.int64
    assert train.texts_a[0] == "hide new secretions from the parental units "  # GLUE's trailing space kept


@needs_data
def test_sst2_subsets_are_seeded_stratified_and_leave_test_alone():
    full_tr, full_te = load_glue("sst2", DATA_DIR, seed=3, test_subset=200)
    a_tr, a_te = load_glue("sst2", DATA_DIR, seed=3, train_subset=1000, test_subset=200)
    b_tr, _ = load_glue("sst2", DATA_DIR, seed=3, train_subset=1000)
    c_tr, _ = load_glue("sst2", DATA_DIR, seed=4, train_subset=1000)
    assert len(a_tr) == 1000 and len(a_te) == 200
    assert a_tr.texts_a == b_tr.texts_a and a_tr.texts_a != c_tr.texts_a
    assert a_te.texts_a == full_te.texts_a  # the train subset never changes the test set
    assert abs(a_tr.class_counts()[1] - 1000 * 37_569 / 67_349) <= 1
    with pytest.raises(ConfigError, match="train_subset"):
        load_glue("sst2", DATA_DIR, seed=0, train_subset=10**6)


@needs_data
def test_qnli_split_is_stratified_disjoint_and_deterministic():
    tr, te = load_glue("qnli", DATA_DIR, seed=0, qnli_test_fraction=0.3)
    assert len(tr) + len(te) == 5_463
    assert len(te) == round(0.3 * 2_702) + round(0.3 * 2_761)
    assert (tr.class_counts() + te.class_counts()).tolist() == [2_702, 2_761]
    assert tr.texts_b is not None and te.texts_b is not None and tr.num_classes == 2
    pairs_tr = set(zip(tr.texts_a, tr.texts_b))
    pairs_te = set(zip(te.texts_a, te.texts_b))
    assert not pairs_tr & pairs_te
    tr2, te2 = load_glue("qnli", DATA_DIR, seed=0, qnli_test_fraction=0.3)
    assert tr2.texts_a == tr.texts_a and np.array_equal(te2.labels, te.labels)
    tr3, _ = load_glue("qnli", DATA_DIR, seed=1, qnli_test_fraction=0.3)
    assert tr3.texts_a != tr.texts_a


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_qnli_train_file_is_used_when_present(tmp_path):
    header = "index\tquestion\tsentence\tlabel\n"
    _write(tmp_path / "QNLI" / "train.tsv", header + "0\tq1?\ts1.\tentailment\n1\tq2?\ts2.\tnot_entailment\n")
    _write(tmp_path / "QNLI" / "dev.tsv", header + "0\tq3?\t\"s3.\tentailment\n")
    tr, te = load_glue("QNLI", tmp_path, seed=0)
    assert tr.texts_a == ["q1?", "q2?"] and tr.texts_b == ["s1.", "s2."] and tr.labels.tolist() == [0, 1]
    assert te.texts_b == ['"s3.'] and te.labels.tolist() == [0]  # QUOTE_NONE keeps the quote


def test_malformed_rows_name_file_and_line(tmp_path):
    _write(tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\ngood film \t1\nbad row without tab\n")
    _write(tmp_path / "SST-2" / "dev.tsv", "sentence\tlabel\nok \t1\n")
    with pytest.raises(DataError, match=r"SST-2/train\.tsv:3: expected 2 tab-separated columns"):
        load_glue("sst2", tmp_path, seed=0)
    _write(tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\ngood film \t1\nmeh \t2\n")
    with pytest.raises(DataError, match=r"train\.tsv:3: unknown label '2'"):
        load_glue("sst2", tmp_path, seed=0)


def test_missing_file_names_path_and_fix(tmp_path):
    _write(tmp_path / "SST-2" / "dev.tsv", "sentence\tlabel\nok \t1\n")
    with pytest.raises(DataError) as err:
        load_glue("sst2", tmp_path, seed=0)
    msg = str(err.value)
    assert str(tmp_path / "SST-2" / "train.tsv") in msg and "AIRTUNE_DATA_DIR" in msg and "\n" not in msg


def test_missing_dir_names_both_candidates_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRTUNE_DATA_DIR", str(tmp_path / "nope_env"))
    with pytest.raises(DataError) as err:
        resolve_data_dir(str(tmp_path / "nope_cfg"))
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path / "nope_cfg") in msg and str(tmp_path / "nope_env") in msg
    assert "set data.dir=/path/to/glue or export AIRTUNE_DATA_DIR=/path/to/glue" in msg
    assert "SST-2/train.tsv" in msg
    monkeypatch.delenv("AIRTUNE_DATA_DIR")
    monkeypatch.setattr(glue, "datasets_importable", lambda: False)
    with pytest.raises(DataError, match="AIRTUNE_DATA_DIR=<unset>"):
        load_glue("sst2", None, seed=0)


def test_resolution_order(tmp_path, monkeypatch):
    cfg, env = tmp_path / "cfg", tmp_path / "env"
    cfg.mkdir()
    env.mkdir()
    monkeypatch.setenv("AIRTUNE_DATA_DIR", str(env))
    assert resolve_data_dir(str(cfg)) == cfg
    assert resolve_data_dir(None) == env


def test_unknown_dataset_and_bad_fraction(tmp_path):
    with pytest.raises(ConfigError, match="data.dataset='mnli'"):
        load_glue("mnli", tmp_path, seed=0)
    with pytest.raises(ConfigError, match="qnli_test_fraction"):
        load_glue("qnli", tmp_path, seed=0, qnli_test_fraction=1.0)


class _Split(dict):
    pass


def test_hub_fallback_converts_splits(monkeypatch):
    monkeypatch.delenv("AIRTUNE_DATA_DIR", raising=False)
    monkeypatch.setattr(glue, "datasets_importable", lambda: True)
    calls = []

    def load_dataset(path, name):
        calls.append((path, name))
        split = _Split(question=["q?", "r?"], sentence=["s.", "t."], label=[1, 0], idx=[0, 1])
        return {"train": split, "validation": split, "test": split}

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    tr, te = load_glue("qnli", None, seed=0, qnli_test_fraction=0.5)
    assert calls == [("glue", "qnli")]
    assert tr.texts_a == ["q?", "r?"] and tr.texts_b == ["s.", "t."] and te.labels.tolist() == [1, 0]


def test_hub_fallback_failure_is_a_one_line_data_error(monkeypatch):
    monkeypatch.delenv("AIRTUNE_DATA_DIR", raising=False)
    monkeypatch.setattr(glue, "datasets_importable", lambda: True)

    def load_dataset(path, name):
        raise ConnectionError("Couldn't reach\n the hub")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(DataError) as err:
        load_glue("sst2", None, seed=0)
    msg = str(err.value)
    assert "\n" not in msg and "data directory not found" in msg and "hub fallback" in msg
    assert "ConnectionError" in msg and "AIRTUNE_DATA_DIR" in msg


def test_text_dataset_subset_and_validation():
    ds = TextDataset(["a", "b", "c"], ["x", "y", "z"], np.array([0, 1, 1]), 2, "toy")
    sub = ds.subset([2, 0])
    assert sub.texts_a == ["c", "a"] and sub.texts_b == ["z", "x"] and sub.labels.tolist() == [1, 0]
    assert len(sub) == 2 and sub.name == "toy"
    with pytest.raises(DataError):
        TextDataset(["a"], None, np.array([0, 1]), 2, "toy")
    with pytest.raises(DataError):
        TextDataset(["a"], None, np.array([5]), 2, "toy")


def test_stratified_sample_sizes():
    labels = np.array([0] * 70 + [1] * 30)
    idx = stratified_sample(labels, 10, np.random.default_rng(0))
    assert idx.size == 10 and np.bincount(labels[idx]).tolist() == [7, 3]
    assert np.unique(idx).size == 10
