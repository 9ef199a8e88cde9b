"""Seed statistics: bootstrap intervals against SciPy and a normal reference, paired verdicts by
hand, and the Kaplan–Meier median of a censored time to target by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from airtune.report.statistics import mean_ci, paired_difference, time_to_target


def test_mean_ci_covers_the_mean_and_matches_a_normal_interval_for_many_seeds():
    x = np.random.default_rng(0).normal(0.8, 0.02, 400)
    ci = mean_ci(x)
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert ci.lo < x.mean() < ci.hi and ci.n == 400
    assert ci.hi - ci.lo == pytest.approx(2 * half, rel=0.15)


def test_mean_ci_edge_cases():
    assert mean_ci([]).n == 0 and math.isnan(mean_ci([]).mean)
    one = mean_ci([0.7])
    assert one.mean == 0.7 and math.isnan(one.lo) and one.fmt() == "0.7000 (n=1)"
    same = mean_ci([0.5, 0.5, 0.5])
    assert (same.lo, same.hi) == (0.5, 0.5)
    assert mean_ci([1.0, np.nan, 3.0]).mean == 2.0          # non-finite entries are dropped


def test_paired_verdicts_by_hand():
    a, b = [0.80, 0.82, 0.79, 0.85, 0.81], [0.70, 0.71, 0.69, 0.75, 0.72]
    res = paired_difference(a, b, higher_is_better=True, names=("soft", "ideal"))
    assert res.diff.mean == pytest.approx(0.10) and res.diff.lo > 0 and res.verdict == "soft better"
    # lower is better (energy): A spends more -> B better
    assert paired_difference([3.0, 3.2, 2.9], [2.0, 2.1, 1.9], higher_is_better=False,
                             names=("soft", "ideal")).verdict == "ideal better"
    # differences of both signs: nothing detected
    assert paired_difference([0.8, 0.7, 0.9, 0.6], [0.7, 0.8, 0.6, 0.9], higher_is_better=True).verdict == \
        "no difference detected"
    assert paired_difference([0.8], [0.7], higher_is_better=True).verdict == "too few seeds"
    with pytest.raises(ValueError, match="same seeds"):
        paired_difference([1, 2], [1], higher_is_better=True)


def test_time_to_target_censoring_by_hand():
    # times 3, 4, 5 reached; two runs censored at 10. KM: S drops at 3 (4/5), 4 (3/5), 5 (2/5 <= 0.5)
    r = time_to_target([3, 5, 10, 10, 4], [True, True, False, False, True])
    assert (r.median, r.reached, r.n) == (5.0, 3, 5)
    # a censored run *before* an event changes the risk set: times 2 (event), 3 (censored), 6, 8
    # S(2) = 3/4, S(6) = 3/4 * 1/2 = 3/8 <= 0.5 -> median 6 (averaging the reached ones would say 5.33)
    r = time_to_target([2, 3, 6, 8], [True, False, True, True])
    assert r.median == 6.0
    # fewer than half reached: no median, the count still reported
    r = time_to_target([3, 5, 10, 10, 10], [True, True, False, False, False])
    assert r.median is None and (r.reached, r.n) == (2, 5)
    assert time_to_target([10, 10], [False, False]).median is None
