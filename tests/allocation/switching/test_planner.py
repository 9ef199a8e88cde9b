"""Algorithm 2 planner (model switching + bandwidth + power): maths by hand, brute force, contract."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from airtune.allocation.exchange import Hints, ModuleSetHint
from airtune.allocation.planner import PlannerContext, RoundInputs, RoundOutcome, make_planner
from airtune.allocation.switching.objective import module_payload_bits, outage_weight
from airtune.allocation.switching.planner import SwitchingPlanner
from airtune.allocation.switching.risk import RiskCoefficients, risk_gap_bound
from airtune.allocation.switching.risk_ensemble import (
    ensemble_module_quotas,
    ensemble_outage_weight,
    ensemble_risk_gap,
    ensemble_risk_marginal,
)
from airtune.config import Config
from airtune.config.schema import WirelessConfig
from airtune.errors import ConfigError
from airtune.experiment.validate import allocator_option_errors
from airtune.registry import ALLOCATORS
from airtune.wireless.channel import shannon_rate_bps
from airtune.wireless.link import link_from_config

DIMS = [(384, 384)] * 12
COEF = RiskCoefficients(prior_samples=30.0)


def context(K=40, n=6, seed=0) -> PlannerContext:
    rng = np.random.default_rng(seed)
    return PlannerContext(num_devices=K, devices_per_round=n, rounds=5, cpu_freq_hz=rng.uniform(0.5e9, 2e9, K),
                          max_power_w=np.full(K, 0.2), kappa=1e-28, data_sizes=rng.integers(10, 80, K).astype(float),
                          link=link_from_config(WirelessConfig(uplink_bandwidth_hz=10e6)), lora_dims=DIMS, seed=0, scheduler="random")


def module_hint(ranks=(4, 8, 16, 32)) -> Hints:
    """What the switching strategy hands the planner: the ranks and each module's exact bits."""
    return Hints(modules=ModuleSetHint(ranks=ranks, payload_bits=module_payload_bits(list(ranks), DIMS)))


def inputs(ctx: PlannerContext, rnd=0, hints=None) -> RoundInputs:
    rng = np.random.default_rng(100 + rnd)
    K = ctx.num_devices
    d = np.sqrt(rng.uniform(50 ** 2, 500 ** 2, K))
    h = 10 ** (-(128.1 + 37.6 * np.log10(d / 1000)) / 10) * rng.exponential(1.0, K)
    cycles = 5e9
    return RoundInputs(round_idx=rnd, rng=rng, channel_gain=h, distance_m=d, uplink_bits=np.zeros(K),
                       downlink_bits=np.zeros(K), compute_s=cycles / ctx.cpu_freq_hz,
                       compute_energy_j=ctx.kappa * cycles * ctx.cpu_freq_hz ** 2, hints=hints or module_hint())


def outcome(plan, energy):
    sel = plan.selected
    return RoundOutcome(sel.copy(), sel * 0.9, np.where(sel, energy, 0.0), np.zeros(len(sel)),
                        np.zeros(len(sel)), 1.0)


# ------------------------------------------------------------------------------- pure maths
def test_module_payload_bits_by_hand():
    # 12 matrices of 384 x 384: 32 bits x r x 12 x 768, plus a 770-parameter head
    assert module_payload_bits([4, 8], DIMS, head_bits=770 * 32).tolist() == [
        32 * 4 * 12 * 768 + 24640, 32 * 8 * 12 * 768 + 24640]


def test_ensemble_bound_by_hand():
    # one device (D=10, success 1) in module 0 of ranks (4, 16); D0=6, P=(0, 10):
    # mean(4^-1/2 + sqrt(4/16), 16^-1/2 + sqrt(16/16)) = mean(1.0, 1.25)
    coef = RiskCoefficients(prior_samples=6.0)
    g = ensemble_risk_gap([[1, 0]], [1.0], [10.0], [4, 16], [0.0, 10.0], coef)
    assert g == pytest.approx(1.125, abs=1e-12)


def test_ensemble_marginal_is_the_exact_difference():
    rng = np.random.default_rng(1)
    K, M = 6, 3
    x = np.eye(M, dtype=float)[rng.integers(0, M, K)] * (rng.random(K) < 0.7)[:, None]
    s, d, r, p = rng.uniform(0.3, 1, K), rng.uniform(5, 50, K), [4, 8, 16], rng.uniform(0, 40, M)
    got = ensemble_risk_marginal(x, s, d, r, p, COEF)
    for k, m in itertools.product(range(K), range(M)):
        on, off = x.copy(), x.copy()
        on[k], off[k] = 0, 0
        on[k, m] = 1
        want = ensemble_risk_gap(on, s, d, r, p, COEF) - ensemble_risk_gap(off, s, d, r, p, COEF)
        assert got[k, m] == pytest.approx(want, rel=1e-10, abs=1e-14)


@pytest.mark.parametrize("ensemble", [True, False])
def test_outage_weights_match_finite_differences(ensemble):
    rng = np.random.default_rng(2)
    K, M = 5, 3
    x = np.eye(M)[rng.integers(0, M, K)]
    s, d, r, p = rng.uniform(0.3, 0.9, K), rng.uniform(5, 50, K), [4, 8, 16], rng.uniform(0, 40, M)
    if ensemble:
        w = ensemble_outage_weight(x, s, d, r, p, COEF)
        f = lambda ss: ensemble_risk_gap(x, ss, d, r, p, COEF)  # noqa: E731
    else:
        w = outage_weight(x, s, d, r, COEF)
        f = lambda ss: risk_gap_bound(x, ss, d, r, 0.0, COEF)  # noqa: E731
    for k in range(K):
        e = np.zeros(K)
        e[k] = 1e-6
        fd = -(f(s + e) - f(s - e)) / 2e-6  # dG/dq = -dG/ds
        assert w[k] == pytest.approx(fd, rel=1e-6)
        assert w[k] > 0


@pytest.mark.parametrize("n", [0, 1, 4, 7])
def test_quotas_minimise_the_ensemble_bound_by_brute_force(n):
    r, p, e = np.array([4.0, 8.0, 32.0]), np.array([50.0, 0.0, 20.0]), 12.0
    got = ensemble_module_quotas(n, e, r, p, COEF)
    assert got.sum() == n

    def value(q):
        return np.sum(np.sqrt(r) / np.sqrt(COEF.prior_samples + p + e * np.asarray(q)))

    best = min(value(q) for q in itertools.product(range(n + 1), repeat=3) if sum(q) == n)
    assert value(got) == pytest.approx(best, rel=1e-12)


# ---------------------------------------------------------------------------------- planner
@pytest.mark.parametrize("switching", ["dual_ascent", "greedy", "one_shot"])
@pytest.mark.parametrize("power", ["adaptive", "max"])
def test_plan_is_a_valid_allocation_meeting_the_deadline(switching, power):
    ctx = context()
    pl = make_planner(ALLOCATORS.get("model_switching"),
                      {"switching": switching, "power": power, "deadline_s": 12.0, "energy_coefficient": 0.5}, ctx)
    inp = inputs(ctx)
    plan = pl.plan(inp)
    assert plan.constraint_violations(ctx.total_bandwidth_hz, ctx.max_power_w) == []
    mods = plan.directives.modules.modules
    assert np.array_equal(mods >= 0, plan.selected) and 0 < plan.num_selected <= ctx.devices_per_round
    assert plan.iterations >= 1 and len(plan.extra["objective_trace"]) == plan.iterations
    assert plan.objective == pytest.approx(min(plan.extra["objective_trace"]))
    sel = plan.selected
    S = module_payload_bits([4, 8, 16, 32], DIMS)[mods[sel]]
    rate = shannon_rate_bps(plan.bandwidth_hz[sel], plan.power_w[sel], inp.channel_gain[sel], ctx.noise_psd_w_per_hz)
    assert np.all(inp.compute_s[sel] + S / rate <= 12.0 * (1 + 1e-6))
    if power == "max":
        assert np.allclose(plan.power_w[sel], 0.2)


def test_energy_coefficient_lowers_adaptive_power_but_not_max_power():
    ctx = context()
    inp = inputs(ctx)
    mean_p = {}
    for power in ("adaptive", "max"):
        for eta in (0.0, 5.0):
            pl = SwitchingPlanner({"power": power, "energy_coefficient": eta, "V": 100.0}, ctx)
            plan = pl.plan(inp)
            mean_p[power, eta] = plan.power_w[plan.selected].mean()
    assert mean_p["max", 0.0] == pytest.approx(0.2) and mean_p["max", 5.0] == pytest.approx(0.2)
    assert mean_p["adaptive", 0.0] == pytest.approx(0.2)  # nothing to save: full power cuts outage
    assert mean_p["adaptive", 5.0] < 0.9 * mean_p["adaptive", 0.0]


def test_energy_queue_follows_the_measured_energy():
    ctx = context(K=10, n=3)
    pl = SwitchingPlanner({"energy_budget_j": 0.4}, ctx)
    plan = pl.plan(inputs(ctx))
    pl.observe(inputs(ctx), plan, outcome(plan, 1.0))
    want = np.where(plan.selected, 1.0 - 0.4, 0.0)  # max(0 + E - 0.4, 0)
    assert np.allclose(pl.energy_queue, want)
    rho = 0.5 * 3 / 10
    assert np.allclose(pl.participation_queue, np.where(plan.selected, 0.0, rho))
    off = SwitchingPlanner({"energy_budget_j": 0.4, "energy_constraints": False}, ctx)
    plan = off.plan(inputs(ctx))
    off.observe(inputs(ctx), plan, outcome(plan, 1.0))
    assert np.all(off.energy_queue == 0)


def test_energy_budget_makes_over_spending_devices_sit_out():
    ctx = context(K=30, n=6)
    pl = SwitchingPlanner({"energy_budget_j": 0.01, "V": 1.0}, ctx)
    first = pl.plan(inputs(ctx, 0))
    pl.observe(inputs(ctx, 0), first, outcome(first, 5.0))
    second = pl.plan(inputs(ctx, 1))
    assert not np.any(first.selected & second.selected)  # a backlog of 5 J outweighs the risk gain


def test_one_shot_never_switches_a_devices_module():
    ctx = context()
    pl = SwitchingPlanner({"switching": "one_shot"}, ctx)
    seen = {}
    for rnd in range(4):
        plan = pl.plan(inputs(ctx, rnd))
        for k in np.flatnonzero(plan.selected):
            assert seen.setdefault(int(k), int(plan.directives.modules.modules[k])) == int(plan.directives.modules.modules[k])
        pl.observe(inputs(ctx, rnd), plan, outcome(plan, 1.0))
    assert len(set(seen.values())) > 1  # the modules are spread over devices


def test_state_dict_resumes_exactly():
    ctx = context()
    opts = {"switching": "one_shot", "energy_budget_j": 0.5}
    a = SwitchingPlanner(opts, ctx)
    plans_a = []
    for rnd in range(4):
        plan = a.plan(inputs(ctx, rnd))
        a.observe(inputs(ctx, rnd), plan, outcome(plan, 1.0))
        plans_a.append(plan)
        if rnd == 1:
            saved = a.state_dict()
    b = SwitchingPlanner(opts, ctx)
    b.load_state_dict(saved)
    for rnd in (2, 3):
        plan = b.plan(inputs(ctx, rnd))
        b.observe(inputs(ctx, rnd), plan, outcome(plan, 1.0))
        assert np.array_equal(plan.directives.modules.modules, plans_a[rnd].directives.modules.modules)
        assert np.array_equal(plan.bandwidth_hz, plans_a[rnd].bandwidth_hz)
        assert np.array_equal(plan.power_w, plans_a[rnd].power_w)


def test_module_ranks_come_from_the_strategy_only():
    ctx = context()
    hints = Hints(modules=ModuleSetHint(ranks=(2, 6), payload_bits=np.array([1e6, 3e6])))
    plan = SwitchingPlanner({}, ctx).plan(inputs(ctx, hints=hints))
    assert plan.extra["num_modules"] == 2 and set(plan.directives.modules.modules) <= {-1, 0, 1}
    assert plan.directives.kinds() == SwitchingPlanner.directives
    with pytest.raises(ConfigError, match="strategy.name=model_switching"):
        SwitchingPlanner({}, ctx).plan(inputs(ctx, hints=Hints()))
    # one owner: the planner has no module option of its own
    assert any("allocation.options.module_ranks" in e for e in allocator_option_errors(
        Config(allocation={"name": "model_switching", "options": {"module_ranks": [4, 8]}})))


def test_options_are_validated_with_the_field_named():
    cfg = Config(allocation={"name": "model_switching", "options": {"switching": "best"}})
    assert any("allocation.options.switching" in e for e in allocator_option_errors(cfg))
    cfg = Config(allocation={"name": "model_switching", "options": {"V": 10.0, "power": "max"}})
    assert allocator_option_errors(cfg) == []


def _scripts_round(K, V, eta, **opts):
    """A round of scripts/switching_alloc.py's generator (where the cycle below was measured)."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
    from switching_alloc import context as sctx
    from switching_alloc import distances, round_inputs
    ctx = sctx(K, K // 10)
    pl = SwitchingPlanner({"deadline_s": 8.0, "V": V, "energy_coefficient": eta, **opts}, ctx)
    return pl.plan(round_inputs(ctx, 0, distances(K)))


def test_outer_loop_stops_when_an_iteration_goes_uphill_and_keeps_the_best():
    # K = 200, V = 100, eta = 0.1 under the fixed-rate link: iterate 2's linearised switching step
    # raises J above iterate 1 (found by scanning K x V x eta of scripts/switching_alloc.py)
    plan = _scripts_round(200, 100.0, 0.1, max_outer=10)
    trace = plan.extra["objective_trace"]
    assert plan.extra["stop"] == "no_descent" and not plan.converged
    assert plan.iterations == len(trace) == 2
    assert trace[1] > trace[0] + 1e-4 * (1 + abs(trace[0]))
    assert plan.objective == min(trace) == trace[0]
    one = _scripts_round(200, 100.0, 0.1, max_outer=1)  # the same best iterate, without the extra step
    assert one.extra["stop"] == "max_outer"
    np.testing.assert_array_equal(one.directives.modules.modules, plan.directives.modules.modules)
    np.testing.assert_allclose(one.bandwidth_hz, plan.bandwidth_hz, rtol=1e-12)


def test_fast_settings_give_the_paper_settings_plan_to_solver_precision():
    # Illinois vs bisection in Algorithm 1 and dual-ascent patience: same round, near-equal J
    fast = _scripts_round(100, 100.0, 0.1)
    paper = _scripts_round(100, 100.0, 0.1, bandwidth_search="bisection", dual_patience=None)
    assert fast.num_selected == paper.num_selected
    assert fast.objective == pytest.approx(paper.objective, rel=2e-3)
    assert fast.extra["switching_iterations"] < paper.extra["switching_iterations"]


def test_inner_solver_convergence_reaches_the_plan():
    ctx = context()
    plan = SwitchingPlanner({"V": 100.0}, ctx).plan(inputs(ctx))
    inner = plan.extra["inner_converged"]
    assert set(inner) == {"switching", "bandwidth", "power"}
    assert plan.converged == (plan.extra["stop"] == "converged" and all(inner.values()))


@pytest.mark.parametrize("switching", ["dual_ascent", "one_shot"])
def test_plan_does_not_change_the_planner_state_observe_commits_it(switching):
    ctx = context()
    pl = SwitchingPlanner({"switching": switching}, ctx)

    def state():
        return {k: (None if v is None else np.array(v, copy=True)) for k, v in pl.state_dict().items()}

    for rnd in range(3):
        before = state()
        plan, again = pl.plan(inputs(ctx, rnd)), pl.plan(inputs(ctx, rnd))
        after = state()
        assert before.keys() == after.keys()
        assert all((b is None and a is None) or np.array_equal(b, a) for b, a in zip(before.values(), after.values()))
        np.testing.assert_array_equal(plan.directives.modules.modules, again.directives.modules.modules)   # same state, same plan
        pl.observe(inputs(ctx, rnd), plan, outcome(plan, 1.0))
        assert pl.budget_j is not None and np.array_equal(pl.mu, plan.extra["mu"])
        if switching == "one_shot":
            np.testing.assert_array_equal(pl.kept, plan.extra["kept"])
