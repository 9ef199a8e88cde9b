"""One counter-based random stream per concern: ``rng(seed, "channel", round)``.

Every random draw of a run is a pure function of (seed, concern, round, device). A resumed run
therefore draws exactly the numbers the uninterrupted run would have drawn, without replaying
generators; the checkpoint still stores torch's global RNG state for completeness.
"""

from __future__ import annotations

import numpy as np

CONCERNS = {
    "init": 1, "topology": 2, "devices": 3, "partition": 4, "channel": 5,
    "schedule": 6, "outage": 7, "batches": 8, "subset": 9, "strategy": 10, "ranks": 11,
    "data_split": 12, "tsfa_stage1": 13,
}
"""Each concern's fixed stream id. Add new concerns with new ids: the existing streams do not
change (a stream depends only on the seed, its own id and its counters)."""


def seed_sequence(seed: int, concern: str, *ids: int) -> np.random.SeedSequence:
    """``SeedSequence(entropy=seed, spawn_key=(concern id, len(ids), *ids))``.

    The seed is the entropy and the concern and counters the spawn key, so no seed can alias
    another concern; the number of counters is part of the key, because NumPy pads short keys
    with zeros (``[a, b]`` and ``[a, b, 0]`` would otherwise give the same stream).
    """
    if concern not in CONCERNS:
        raise KeyError(f"unknown RNG concern '{concern}'; known: {sorted(CONCERNS)}")
    counters = tuple(int(i) for i in ids)
    return np.random.SeedSequence(int(seed), spawn_key=(CONCERNS[concern], len(counters), *counters))


def rng(seed: int, concern: str, *ids: int) -> np.random.Generator:
    """An independent NumPy generator for ``concern`` at the given counters."""
    return np.random.default_rng(seed_sequence(seed, concern, *ids))


def int_seed(seed: int, concern: str, *ids: int) -> int:
    """A 63-bit integer seed (for torch) for ``concern`` at the given counters."""
    return int(seed_sequence(seed, concern, *ids).generate_state(2, dtype=np.uint32).astype(np.uint64)
               .dot(np.array([1, 1 << 32], dtype=np.uint64)) & np.uint64((1 << 63) - 1))
