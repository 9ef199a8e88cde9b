"""Paper 1's round-weight shapes, the aggregate energy queue and the calibrated energy budget
(hand-computed values)."""

import numpy as np
import pytest

from airtune.allocation.split_fed import lyapunov as ly
from airtune.allocation.split_fed.budget import BudgetCalibrator, calibrated_budget_j


def test_round_weight_shapes_hand_computed():
    assert ly.round_weight(1, 4, "geometric", 0.5) == 0.25          # 0.5^(4-1-1)
    assert ly.round_weight(3, 4, "geometric", 0.5) == 1.0
    assert ly.round_weight(0, 4, "uniform") == ly.round_weight(3, 4, "uniform") == 1.0
    assert ly.round_weight(0, 4, "linear") == 0.25 and ly.round_weight(2, 4, "linear") == 0.75
    with pytest.raises(ValueError, match="shape='cosine'"):
        ly.round_weight(0, 4, "cosine")
    with pytest.raises(ValueError, match="round_idx=4"):
        ly.round_weight(4, 4, "linear")


def test_rho_for_first_weight_fixes_the_shape_at_any_horizon():
    assert ly.rho_for_first_weight(0.25, 3) == 0.5                   # 0.5^2 = 0.25
    assert ly.rho_for_first_weight(0.3, 1) == 1.0
    for t in (12, 400):
        rho = ly.rho_for_first_weight(0.1, t)
        assert ly.round_weight(0, t, "geometric", rho) == pytest.approx(0.1, rel=1e-12)
        assert ly.round_weight(t // 2, t, "geometric", rho) == pytest.approx(0.1 ** ((t - 1 - t // 2) / (t - 1)))
    with pytest.raises(ValueError, match="first_weight=0"):
        ly.rho_for_first_weight(0.0, 10)


def test_step_aggregate_queue_hand_computed():
    q = ly.EnergyQueues(np.array([0.5]))
    # spent 2 + 4 (device 2 idle: its inf is ignored), budget 1 + 1 + 1 = 3: 0.5 + 6 - 3 = 3.5
    new = ly.step_aggregate_queue(q, [2.0, 4.0, np.inf], [True, True, False], 1.0)
    np.testing.assert_array_equal(new.backlog_j, [3.5])
    drained = ly.step_aggregate_queue(new, [2.0, 4.0, 1.0], [False, False, True], [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(drained.backlog_j, [0.0])           # max(3.5 + 1 - 6, 0)
    with pytest.raises(ValueError, match="one queue"):
        ly.step_aggregate_queue(ly.EnergyQueues.zeros(3), 1.0, [True] * 3, 1.0)


def test_calibrated_budget_hand_computed():
    spend = np.array([[0.0, 0.7, 1.4], [0.7, 0.0, 1.4]])             # mean 0.7 J per device-round
    assert calibrated_budget_j(spend, 0.4) == pytest.approx(0.5)      # 0.7 / 1.4
    assert calibrated_budget_j(spend, 0.3) == pytest.approx(0.7 / 1.3)
    with pytest.raises(ValueError, match="budget_excess=0"):
        calibrated_budget_j(spend, 0.0)
    cal = BudgetCalibrator(0.4)
    assert cal.budget_j == 0.0
    cal = cal.add(spend[0]).add(spend[1])
    assert cal.device_rounds == 6 and cal.budget_j == pytest.approx(calibrated_budget_j(spend, 0.4))
    with pytest.raises(ValueError, match="shape"):
        cal.add(spend)
