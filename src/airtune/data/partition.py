"""Split a labelled pool across devices: IID, label-wise Dirichlet, and label shards.

Pure numpy. Every partitioner has the signature ``fn(labels, num_devices, rng, **params)``,
takes its randomness only from the explicit ``np.random.Generator`` and returns
``list[np.ndarray]`` of sorted int64 indices: one array per device, pairwise disjoint and
together covering every index of ``labels``. Look them up by name in
:data:`airtune.registry.PARTITIONERS` (``"iid"``, ``"dirichlet"``, ``"shards"``).
"""

from __future__ import annotations

import numpy as np

from airtune.errors import ConfigError, DataError
from airtune.registry import PARTITIONERS

__all__ = ["iid", "dirichlet", "shards", "partition", "label_counts", "describe", "check_partitions"]


def _check_common(labels: np.ndarray, num_devices: int) -> np.ndarray:
    labels = np.asarray(labels).reshape(-1)
    if isinstance(num_devices, bool) or not isinstance(num_devices, (int, np.integer)) or num_devices < 1:
        raise ConfigError(f"num_devices={num_devices!r} must be a positive integer; fix: e.g. num_devices=10")
    if labels.shape[0] < num_devices:
        raise DataError(
            f"cannot give each of {num_devices} devices a sample from only {labels.shape[0]} examples; "
            "fix: use fewer devices or a larger data subset"
        )
    return labels


def _sorted(parts: list[np.ndarray]) -> list[np.ndarray]:
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


@PARTITIONERS.register("iid")
def iid(labels: np.ndarray, num_devices: int, rng: np.random.Generator, **_: object) -> list[np.ndarray]:
    """Uniform random split: shuffle all indices and cut into ``num_devices`` near-equal parts.

    Device sizes differ by at most one: :math:`|D_k| \\in \\{\\lfloor N/K \\rfloor, \\lceil N/K \\rceil\\}`.
    """
    labels = _check_common(labels, num_devices)
    perm = rng.permutation(labels.shape[0])
    return _sorted(np.array_split(perm, int(num_devices)))


@PARTITIONERS.register("dirichlet")
def dirichlet(
    labels: np.ndarray,
    num_devices: int,
    rng: np.random.Generator,
    alpha: float = 0.5,
    min_partition_size: int = 10,
    self_balancing: bool = False,
    max_tries: int = 10_000,
    **_: object,
) -> list[np.ndarray]:
    """Label-wise Dirichlet split (non-IID label skew).

    For every class :math:`c` draw :math:`p_c \\sim \\mathrm{Dir}(\\alpha \\mathbf{1}_K)` and cut the
    shuffled indices of class :math:`c` at :math:`\\lfloor N_c \\sum_{j \\le k} p_{c,j} \\rfloor`,
    giving device :math:`k` its share. Small :math:`\\alpha` concentrates each class on few
    devices; :math:`\\alpha \\to \\infty` approaches IID. The whole draw is repeated until every
    device holds at least ``min_partition_size`` samples (at most ``max_tries`` draws).

    With ``self_balancing`` a device already holding at least :math:`N/K` samples gets no share
    of the next classes (:math:`p_{c,k} \\leftarrow 0`, renormalised), as in flwr-datasets.

    Source: [hsu2019noniid]; the procedure of flwr-datasets' ``DirichletPartitioner``.

    Parameters
    ----------
    labels : (N,) int array
    num_devices : int
        K.
    rng : np.random.Generator
    alpha : float
        Dirichlet concentration, > 0.
    min_partition_size : int
        Smallest admissible device size.
    self_balancing : bool
    max_tries : int
        Bound on redraws before giving up.

    Raises
    ------
    DataError
        No draw within ``max_tries`` met ``min_partition_size``.
    """
    labels = _check_common(labels, num_devices)
    k = int(num_devices)
    if not np.isfinite(alpha) or alpha <= 0:
        raise ConfigError(f"alpha={alpha!r} must be a positive number; fix: e.g. alpha=0.5 (smaller = more skewed)")
    if min_partition_size < 0:
        raise ConfigError(f"min_partition_size={min_partition_size!r} must be >= 0; fix: e.g. 10")
    n = labels.shape[0]
    fix = (
        f"raise alpha (now {alpha}), lower min_partition_size (now {min_partition_size}), "
        f"use fewer devices (now {k}) or more data (now {n} samples)"
    )
    if n < k * min_partition_size:
        raise DataError(
            f"dirichlet partition impossible: {k} devices x min_partition_size={min_partition_size} "
            f"exceeds the {n} samples; fix: {fix}"
        )
    classes = np.unique(labels)
    # Shuffle each class once; the proportions are redrawn every try. The split is accepted
    # on sizes alone, which do not depend on the shuffle, so reusing it keeps the law exact.
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    for _try in range(int(max_tries)):
        cuts, sizes = _dirichlet_cuts(by_class, k, rng, alpha, self_balancing, n)
        if int(np.min(sizes)) >= min_partition_size:
            break
    else:
        raise DataError(
            f"dirichlet partition failed: no draw in {max_tries} tries gave every one of {k} devices "
            f"at least min_partition_size={min_partition_size} samples (alpha={alpha}); fix: {fix}"
        )
    pieces = [np.split(idx, c) for c, idx in zip(cuts, by_class)]  # [class][device]
    return _sorted([np.concatenate([pc[d] for pc in pieces]) for d in range(k)])


def _dirichlet_cuts(
    by_class: list[np.ndarray], k: int, rng: np.random.Generator, alpha: float, self_balancing: bool, n: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """One Dirichlet draw: cut points (K-1,) into each class's indices, and device sizes (K,)."""
    sizes = np.zeros(k, dtype=np.int64)
    cuts = []
    for idx in by_class:
        p = rng.dirichlet(np.full(k, float(alpha)))  # (K,)
        if self_balancing:
            q = np.where(sizes < n / k, p, 0.0)
            if q.sum() > 0:
                p = q / q.sum()
        c = (np.cumsum(p) * idx.size).astype(np.int64)[:-1]  # (K-1,)
        c = np.clip(c, 0, idx.size)
        sizes += np.diff(np.concatenate(([0], c, [idx.size])))
        cuts.append(c)
    return cuts, sizes


@PARTITIONERS.register("shards")
def shards(
    labels: np.ndarray, num_devices: int, rng: np.random.Generator, shards_per_device: int = 2, **_: object
) -> list[np.ndarray]:
    """Label shards (McMahan et al. 2017): sort by label, cut into ``K * s`` shards, deal ``s`` each.

    Indices are shuffled within each label before the (stable) sort, so a shard is a random
    set of consecutive-label samples. Shard sizes differ by at most one. Source: [mcmahan2017fedavg].
    """
    labels = _check_common(labels, num_devices)
    s = shards_per_device
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
        raise ConfigError(f"shards_per_device={s!r} must be a positive integer; fix: e.g. shards_per_device=2")
    k = int(num_devices)
    num_shards = k * int(s)
    if labels.shape[0] < num_shards:
        raise DataError(
            f"shards partition impossible: {k} devices x shards_per_device={s} = {num_shards} shards "
            f"but only {labels.shape[0]} samples; fix: lower shards_per_device or the number of devices"
        )
    perm = rng.permutation(labels.shape[0])
    order = perm[np.argsort(labels[perm], kind="stable")]  # (N,) grouped by label
    pieces = np.array_split(order, num_shards)
    deal = rng.permutation(num_shards).reshape(k, int(s))  # (K, s) shard ids
    return _sorted([np.concatenate([pieces[j] for j in row]) for row in deal])


# ---------------------------------------------------------------------------- helpers


def partition(
    method: str, labels: np.ndarray, num_devices: int, rng: np.random.Generator, **params: object
) -> list[np.ndarray]:
    """Look ``method`` up in PARTITIONERS, run it and check the result is a disjoint cover."""
    fn = PARTITIONERS.get(method)
    parts = fn(np.asarray(labels), num_devices, rng, **params)
    check_partitions(parts, len(labels))
    return parts


def check_partitions(partitions: list[np.ndarray], n: int) -> None:
    """Raise DataError unless ``partitions`` are disjoint and cover ``range(n)`` exactly."""
    allidx = np.concatenate([np.asarray(p, dtype=np.int64) for p in partitions]) if partitions else np.zeros(0)
    counts = np.bincount(allidx, minlength=n) if allidx.size else np.zeros(n, np.int64)
    if allidx.size and (allidx.min() < 0 or allidx.max() >= n):
        raise DataError(f"partition holds indices outside [0, {n})")
    if not np.all(counts == 1):
        raise DataError(
            f"partition is not a disjoint cover of {n} samples: {int(np.sum(counts == 0))} missing, "
            f"{int(np.sum(counts > 1))} duplicated"
        )


def label_counts(partitions: list[np.ndarray], labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, C) int64 number of samples of each class on each device."""
    labels = np.asarray(labels).reshape(-1)
    k = len(partitions)
    sizes = np.array([len(p) for p in partitions], dtype=np.int64)
    if sizes.sum() == 0:
        return np.zeros((k, num_classes), dtype=np.int64)
    dev = np.repeat(np.arange(k), sizes)  # (sum sizes,)
    lab = labels[np.concatenate([np.asarray(p, dtype=np.int64) for p in partitions])]
    flat = np.bincount(dev * num_classes + lab, minlength=k * num_classes)
    return flat.reshape(k, num_classes).astype(np.int64)


def describe(partitions: list[np.ndarray], labels: np.ndarray, num_classes: int, name: str = "partition") -> str:
    """One line for the log: device count, size spread, and label skew.

    ``max-class`` is the mean over devices of the largest class share
    (1/C for perfectly balanced devices, 1 for single-class devices).
    """
    counts = label_counts(partitions, labels, num_classes)  # (K, C)
    sizes = counts.sum(axis=1)
    nonempty = sizes > 0
    frac = counts[nonempty] / sizes[nonempty, None]
    max_frac = float(frac.max(axis=1).mean()) if frac.size else float("nan")
    classes_per = float((counts > 0).sum(axis=1).mean()) if counts.size else 0.0
    return (
        f"{name}: {len(partitions)} devices, {int(sizes.sum())} samples, size min/median/max "
        f"{int(sizes.min()) if sizes.size else 0}/{int(np.median(sizes)) if sizes.size else 0}/"
        f"{int(sizes.max()) if sizes.size else 0}, mean max-class share {max_frac:.2f}, "
        f"classes/device {classes_per:.1f}"
    )
