"""GLUE text classification data (SST-2, QNLI) from GLUE's own TSV layout.

The loader reads a directory laid out like GLUE's download (``SST-2/train.tsv``,
``SST-2/dev.tsv``, ``QNLI/dev.tsv`` ...). The directory comes from the config
(``data.dir``), else from the environment variable ``AIRTUNE_DATA_DIR``. Where
neither is set and the Hugging Face ``datasets`` package is importable, the loader
falls back to ``load_dataset("glue", name)`` (logged, since it needs a hub).

GLUE's TSV files are tab separated with a header row and no quoting: they are
read with ``csv.QUOTE_NONE``. Labels: SST-2 ``0``/``1``; QNLI ``entailment`` = 0,
``not_entailment`` = 1 (the order of the Hugging Face ``glue/qnli`` features).

QNLI's train file is not always available: without ``QNLI/train.tsv`` the dev set
is split (seeded, label-stratified) into a training pool and a held-out test set.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from airtune.errors import ConfigError, DataError
from airtune.experiment.seeds import rng as stream

log = logging.getLogger(__name__)

ENV_DATA_DIR = "AIRTUNE_DATA_DIR"
_FIX = (
    f"set data.dir=/path/to/glue or export {ENV_DATA_DIR}=/path/to/glue "
    "(a directory holding SST-2/train.tsv, SST-2/dev.tsv, QNLI/dev.tsv in GLUE's TSV layout)"
)


@dataclass(frozen=True)
class _Spec:
    """Where a GLUE task lives and how its columns map to texts and labels."""

    name: str  # our name ("sst2")
    subdir: str  # GLUE's directory name ("SST-2")
    text_columns: tuple[str, ...]  # one (single sentence) or two (sentence pair)
    label_names: tuple[str, ...]  # label string in the TSV, index = class id
    hf_name: str  # Hugging Face glue config name


SPECS: dict[str, _Spec] = {
    "sst2": _Spec("sst2", "SST-2", ("sentence",), ("0", "1"), "sst2"),
    "qnli": _Spec("qnli", "QNLI", ("question", "sentence"), ("entailment", "not_entailment"), "qnli"),
}


@dataclass(frozen=True, eq=False)
class TextDataset:
    """Texts and integer labels of one split.

    Attributes
    ----------
    texts_a : list[str]
        First (or only) sentence of every example, length N.
    texts_b : list[str] | None
        Second sentence of sentence-pair tasks (QNLI: the context sentence), else None.
    labels : np.ndarray
        (N,) int64 class ids in ``[0, num_classes)``.
    num_classes : int
        Number of classes.
    name : str
        Task name ("sst2", "qnli").
    """

    texts_a: list[str]
    texts_b: list[str] | None
    labels: np.ndarray
    num_classes: int
    name: str

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        object.__setattr__(self, "labels", labels)
        n = len(self.texts_a)
        if labels.shape[0] != n:
            raise DataError(f"{self.name}: {n} texts but {labels.shape[0]} labels")
        if self.texts_b is not None and len(self.texts_b) != n:
            raise DataError(f"{self.name}: {n} first sentences but {len(self.texts_b)} second sentences")
        if n and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise DataError(
                f"{self.name}: labels must lie in [0, {self.num_classes}), found "
                f"[{labels.min()}, {labels.max()}]"
            )

    def __len__(self) -> int:
        return len(self.texts_a)

    @property
    def is_pair(self) -> bool:
        """True for sentence-pair tasks (two texts per example)."""
        return self.texts_b is not None

    def subset(self, indices: Sequence[int] | np.ndarray) -> TextDataset:
        """The examples at ``indices`` (in that order) as a new dataset."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise DataError(f"{self.name}: subset index out of range for {len(self)} examples")
        a = [self.texts_a[i] for i in idx]
        b = None if self.texts_b is None else [self.texts_b[i] for i in idx]
        return TextDataset(a, b, self.labels[idx], self.num_classes, self.name)

    def class_counts(self) -> np.ndarray:
        """(num_classes,) int64 number of examples per class."""
        return np.bincount(self.labels, minlength=self.num_classes).astype(np.int64)


# ---------------------------------------------------------------------------- directories


def resolve_data_dir(configured: str | os.PathLike[str] | None) -> Path:
    """The GLUE data directory: the configured one first, then ``$AIRTUNE_DATA_DIR``.

    Raises
    ------
    DataError
        Neither candidate is an existing directory (one line naming both and the fix).
    """
    env = os.environ.get(ENV_DATA_DIR) or None
    candidates = [("data.dir", configured), (ENV_DATA_DIR, env)]
    for i, (what, value) in enumerate(candidates):
        if value is None or str(value) == "":
            continue
        path = Path(value).expanduser()
        if path.is_dir():
            if i > 0 and configured not in (None, ""):
                log.warning("data.dir=%r does not exist; using %s=%r instead", str(configured), what, str(value))
            return path
    raise DataError(
        f"GLUE data directory not found: looked at data.dir={_show(configured)} (config) and "
        f"{ENV_DATA_DIR}={_show(env)} (environment); fix: {_FIX}"
    )


def _show(value: object) -> str:
    if value is None or str(value) == "":
        return "<unset>"
    path = Path(str(value)).expanduser()
    return f"'{value}' ({'not a directory' if path.exists() else 'does not exist'})"


# ---------------------------------------------------------------------------- TSV reading


def read_glue_tsv(path: Path, spec: _Spec) -> TextDataset:
    """Read one GLUE TSV file (header row, tab separated, no quoting).

    Raises
    ------
    DataError
        The file is missing, lacks a needed column, or has a malformed row (names the line).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"GLUE file not found: {path}; fix: put GLUE's {spec.subdir}/{path.name} there, or {_FIX}"
        )
    label_id = {name: i for i, name in enumerate(spec.label_names)}
    cols_a: list[str] = []
    cols_b: list[str] = []
    labels: list[int] = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file (expected a header row); fix: re-copy the GLUE file")
        header = [h.strip() for h in header]
        needed = (*spec.text_columns, "label")
        missing = [c for c in needed if c not in header]
        if missing:
            raise DataError(
                f"{path}:1: header {header} lacks column(s) {missing}; fix: use GLUE's "
                f"{spec.subdir} TSV with columns {list(needed)}"
            )
        pos = [header.index(c) for c in spec.text_columns]
        pos_label = header.index("label")
        width = len(header)
        for row in reader:
            line = reader.line_num
            if not row:  # blank line (e.g. trailing newline)
                continue
            if len(row) != width:
                raise DataError(
                    f"{path}:{line}: expected {width} tab-separated columns {header}, found {len(row)}; "
                    "fix: repair or re-copy the file (GLUE TSVs have no quoting and no tabs inside fields)"
                )
            label = label_id.get(row[pos_label].strip())
            if label is None:
                raise DataError(
                    f"{path}:{line}: unknown label {row[pos_label]!r}, expected one of "
                    f"{list(spec.label_names)}; fix: repair or re-copy the file"
                )
            cols_a.append(row[pos[0]])
            if len(pos) > 1:
                cols_b.append(row[pos[1]])
            labels.append(label)
    return TextDataset(
        texts_a=cols_a,
        texts_b=cols_b if len(pos) > 1 else None,
        labels=np.asarray(labels, dtype=np.int64),
        num_classes=len(spec.label_names),
        name=spec.name,
    )


# ---------------------------------------------------------------------------- sampling


def stratified_sample(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted int64 indices of a seeded random subset of size ``n`` keeping class shares.

    Class ``c`` gets :math:`\\lfloor n N_c / N \\rfloor` examples plus one for the classes with
    the largest remainders (largest-remainder rounding), so the sizes sum to exactly ``n``.
    """
    labels = np.asarray(labels)
    total = labels.shape[0]
    if not 0 <= n <= total:
        raise DataError(f"cannot draw {n} examples from {total}")
    classes, inverse = np.unique(labels, return_inverse=True)
    counts = np.bincount(inverse, minlength=classes.size)
    quota = n * counts / max(total, 1)
    take = np.floor(quota).astype(np.int64)
    short = n - int(take.sum())
    if short:
        order = np.argsort(-(quota - take), kind="stable")
        take[order[:short]] += 1
    picked = [rng.permutation(np.flatnonzero(inverse == c))[: take[c]] for c in range(classes.size)]
    return np.sort(np.concatenate(picked)).astype(np.int64) if picked else np.zeros(0, np.int64)


def stratified_split(
    labels: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded label-stratified split into (train, test) sorted int64 index arrays.

    Each class contributes ``round(test_fraction * N_c)`` examples to the test set.
    """
    labels = np.asarray(labels)
    test: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test.append(idx[: int(round(test_fraction * idx.size))])
    test_idx = np.sort(np.concatenate(test)).astype(np.int64) if test else np.zeros(0, np.int64)
    mask = np.ones(labels.shape[0], dtype=bool)
    mask[test_idx] = False
    return np.flatnonzero(mask).astype(np.int64), test_idx


def _subset(ds: TextDataset, n: int | None, rng: np.random.Generator, field: str) -> TextDataset:
    if n is None:
        return ds
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"{field}={n!r} must be a positive integer or null; fix: set {field}=1000 or null")
    if n > len(ds):
        raise ConfigError(
            f"{field}={n} exceeds the {len(ds)} examples available in {ds.name}; "
            f"fix: set {field}<={len(ds)} or null"
        )
    if n == len(ds):
        return ds
    return ds.subset(stratified_sample(ds.labels, int(n), rng))


# ---------------------------------------------------------------------------- public loader


def canonical_name(dataset: str) -> str:
    """``"SST-2"``, ``"sst_2"``, ``"sst2"`` -> ``"sst2"``; unknown names raise ConfigError."""
    key = str(dataset).lower().replace("-", "").replace("_", "")
    if key not in SPECS:
        raise ConfigError(f"data.dataset={dataset!r} is not supported; fix: choose one of {sorted(SPECS)}")
    return key


def load_glue(
    dataset: str,
    data_dir: str | os.PathLike[str] | None,
    *,
    seed: int,
    qnli_test_fraction: float = 0.3,
    train_subset: int | None = None,
    test_subset: int | None = None,
) -> tuple[TextDataset, TextDataset]:
    """Load a GLUE task as (train pool, test set).

    Parameters
    ----------
    dataset : {"sst2", "qnli"}
        Task name.
    data_dir : path or None
        Directory in GLUE's TSV layout. None: ``$AIRTUNE_DATA_DIR``, else the Hugging Face
        ``datasets`` hub fallback when that package is importable.
    seed : int
        Seeds the QNLI split and the subsets. The split, the train subset and the test subset
        use independent streams, so choosing ``train_subset`` never changes the test set.
    qnli_test_fraction : float
        Share of QNLI dev held out as the test set when no ``QNLI/train.tsv`` exists.
    train_subset, test_subset : int or None
        Size of a seeded, label-stratified random subset (None: everything).

    Notes
    -----
    SST-2: train pool = ``train.tsv``, test set = ``dev.tsv`` (GLUE's test labels are hidden).
    QNLI: with ``train.tsv`` the same; without it ``dev.tsv`` is split (stratified) into a
    pool of ``1 - qnli_test_fraction`` and a test set of ``qnli_test_fraction``.
    """
    name = canonical_name(dataset)
    spec = SPECS[name]
    if not 0.0 < float(qnli_test_fraction) < 1.0:
        raise ConfigError(
            f"data.qnli_test_fraction={qnli_test_fraction!r} must lie in (0, 1); fix: e.g. 0.3"
        )
    train: TextDataset | None
    nothing_configured = data_dir in (None, "") and not os.environ.get(ENV_DATA_DIR)
    if nothing_configured and datasets_importable():
        train, test = _load_hub(spec)
    else:
        root = resolve_data_dir(data_dir) / spec.subdir
        test = read_glue_tsv(root / "dev.tsv", spec)
        split_dev = name == "qnli" and not (root / "train.tsv").is_file()
        train = None if split_dev else read_glue_tsv(root / "train.tsv", spec)

    if train is None:  # QNLI without a train file: split dev into pool and test set
        rng_split = stream(seed, "data_split")
        tr_idx, te_idx = stratified_split(test.labels, float(qnli_test_fraction), rng_split)
        log.info(
            "QNLI train.tsv absent: split dev.tsv (%d rows) into a %d-row train pool and a %d-row test set",
            len(test), tr_idx.size, te_idx.size,
        )
        train, test = test.subset(tr_idx), test.subset(te_idx)

    train = _subset(train, train_subset, stream(seed, "subset", 0), "data.train_subset")
    test = _subset(test, test_subset, stream(seed, "subset", 1), "data.test_subset")
    return train, test


def datasets_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("datasets") is not None


def _load_hub(spec: _Spec) -> tuple[TextDataset, TextDataset]:
    """``load_dataset("glue", name)`` -> (train, validation) as TextDatasets."""
    log.warning(
        "no GLUE data directory configured (data.dir, %s): falling back to the Hugging Face hub "
        "load_dataset('glue', '%s')", ENV_DATA_DIR, spec.hf_name,
    )
    try:
        from datasets import load_dataset  # type: ignore[import-not-found]

        ds = load_dataset("glue", spec.hf_name)
        train = _from_hf(ds["train"], spec)
        test = _from_hf(ds["validation"], spec)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 -- import, network, hub and format errors alike
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise DataError(
            f"GLUE data directory not found (data.dir and {ENV_DATA_DIR} unset) and the Hugging Face "
            f"hub fallback load_dataset('glue', '{spec.hf_name}') failed ({detail}); fix: {_FIX}"
        ) from exc
    return train, test


def _from_hf(split: object, spec: _Spec) -> TextDataset:
    cols = [list(split[c]) for c in spec.text_columns]  # type: ignore[index]
    labels = np.asarray(split["label"], dtype=np.int64)  # type: ignore[index]
    return TextDataset(
        texts_a=[str(t) for t in cols[0]],
        texts_b=[str(t) for t in cols[1]] if len(cols) > 1 else None,
        labels=labels,
        num_classes=len(spec.label_names),
        name=spec.name,
    )
