"""Algorithm 2 planner (model switching + bandwidth + power): maths by hand, brute force, contract,
and paper 3's mechanism on the fixed-slot link (module-dependent reliability)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from airtune.allocation.exchange import DissimilarityHint, Hints, ModuleSetHint
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
SLOT = WirelessConfig(upload_slot_s=0.5, interferer_density_per_m2=1.0 / (np.pi * 500.0**2))


def slot_context(K=12, n=4, seed=0) -> PlannerContext:
    ctx = context(K, n, seed)
    return PlannerContext(**{**ctx.__dict__, "link": link_from_config(SLOT)})


def slot_inputs(ctx, d, rnd=0) -> RoundInputs:
    K = ctx.num_devices
    return RoundInputs(round_idx=rnd, rng=np.random.default_rng(100 + rnd), channel_gain=ctx.link.mean_gain(d),
                       distance_m=np.asarray(d, float), uplink_bits=np.zeros(K), downlink_bits=np.zeros(K),
                       compute_s=np.full(K, 1.0), compute_energy_j=np.full(K, 0.05), hints=module_hint())


@pytest.mark.parametrize("switching", ["online", "greedy", "one_shot"])
@pytest.mark.parametrize("power", ["adaptive", "max"])
def test_plan_is_a_valid_allocation(switching, power):
    ctx = context()
    pl = make_planner(ALLOCATORS.get("model_switching"),
                      {"switching": switching, "power": power, "deadline_s": 12.0}, ctx)
    plan = pl.plan(inputs(ctx))
    assert plan.constraint_violations(ctx.total_bandwidth_hz, ctx.max_power_w) == []
    mods = plan.directives.modules.modules
    assert np.array_equal(mods >= 0, plan.selected) and 0 < plan.num_selected <= ctx.devices_per_round
    if power == "max" or switching == "one_shot":
        assert np.allclose(plan.power_w[plan.selected], 0.2)


def test_slot_link_planner_and_runner_agree_on_threshold_rate_and_success():
    # the rate charged is payload / slot, decoded iff SINR >= 2^(S/(bT)) - 1; the planner's
    # success probability of each module is the runner's for the payload actually sent
    from airtune.experiment.round import radio_round
    from airtune.wireless.channel import init_channel, step_channel
    from airtune.wireless.devices import sample_device_profiles
    ctx = slot_context(K=10, n=4)
    rng = np.random.default_rng(0)
    ch = step_channel(init_channel(rng, 10, 500.0, 10.0), rng)
    dev = sample_device_profiles(rng, 10, cycles_per_sample=2e7)
    inp = RoundInputs(**{**slot_inputs(ctx, ch.distance_m).__dict__, "channel_gain": ctx.link.planner_gain(ch)})
    plan = SwitchingPlanner({}, ctx).plan(inp)
    sel, mods = plan.selected, plan.directives.modules.modules
    bits = np.where(sel, module_payload_bits([4, 8, 16, 32], DIMS)[np.maximum(mods, 0)], 0.0)
    radio = radio_round(ctx.link, ch, dev, plan, bits, np.zeros(10), np.where(sel, 16.0, 0.0), np.random.default_rng(1))
    np.testing.assert_allclose(radio.uplink_rate_bps[sel], bits[sel] / 0.5, rtol=1e-12)
    np.testing.assert_allclose(radio.success_prob[sel], plan.extra["planned_success"][sel], rtol=1e-10)
    theta = 2 ** (bits[sel] / (plan.bandwidth_hz[sel] * 0.5)) - 1
    np.testing.assert_array_equal(radio.delivered[sel], radio.sinr[sel] >= theta * (1 - 1e-9))
    # hand value: rank-8 payload on 2 MHz over 0.5 s needs theta = 2^(S / 1e6) - 1
    S8 = module_payload_bits([8], DIMS)[0]
    assert ctx.link.sinr_threshold_for(2e6, S8) == pytest.approx(2 ** (S8 / 1e6) - 1, rel=1e-12)


def test_smaller_modules_are_more_reliable_on_the_slot_link():
    ctx = slot_context()
    S = module_payload_bits([4, 8, 16, 32], DIMS)
    succ = ctx.link.success_probability(np.full(4, 200.0), np.full(4, 2e6), np.full(4, 0.2), np.ones(4), S)
    assert np.all(np.diff(succ) < 0)


def test_mechanism_the_round_cost_picks_smaller_modules_as_the_channel_worsens():
    # the short-term slice every scheme prices (greedy from a fresh state, one device with all of B):
    # the chosen rank falls with distance (measured: 32 at 30-100 m, 16 at 150-200 m, 8 at 250-350 m, 4 at 400-450 m (theorem bound))
    ctx = slot_context(K=1, n=1)
    ranks = []
    for dist in (30.0, 60.0, 100.0, 150.0, 200.0, 250.0, 300.0, 350.0, 400.0, 450.0):
        plan = SwitchingPlanner({"switching": "greedy"}, ctx).plan(slot_inputs(ctx, np.array([dist]), 0))
        m = int(plan.directives.modules.modules[0])
        assert m >= 0
        ranks.append([4, 8, 16, 32][m])
    assert all(a >= b for a, b in zip(ranks, ranks[1:])) and ranks[-1] < ranks[0]


def test_mechanism_online_switching_moves_a_worsening_device_to_smaller_modules():
    # the proposed scheme over rounds: device at 40 m for 8 rounds, then at 400 m. The bound
    # rotates it over the modules (a module that lags behind is attractive), so the property is on
    # the mean rank it trains (measured, theorem bound: 25.1 before, 7.0 after; ensemble: 25.1, 9.1)
    ctx = slot_context(K=1, n=1)
    pl = SwitchingPlanner({}, ctx)
    trained = []
    for rnd in range(20):
        inp = slot_inputs(ctx, np.array([40.0 if rnd < 8 else 400.0]), rnd)
        plan = pl.plan(inp)
        m = int(plan.directives.modules.modules[0])
        trained.append([4, 8, 16, 32][m] if m >= 0 else None)
        pl.observe(inp, plan, outcome(plan, 0.1))
    before = [r for r in trained[:8] if r is not None]
    after = [r for r in trained[12:] if r is not None]
    assert len(after) >= 4 and np.mean(after) < 0.5 * np.mean(before)


def worsening_device_run(risk: str, seed: int, rounds: int = 24) -> tuple[list[int], list[float]]:
    """6 devices at 40-150 m, all may take part; device 0 moves from 40 m to 300 m at round 8.
    Deliveries are drawn with the planned success probabilities. Returns device 0's trained rank
    per round (0: idle) and its planned success."""
    K = 6
    ctx = slot_context(K=K, n=K)
    pl = SwitchingPlanner({"risk": risk}, ctx)
    rng = np.random.default_rng(seed)
    base = np.linspace(40.0, 150.0, K)
    ranks, success = [], []
    for rnd in range(rounds):
        d = base.copy()
        d[0] = 40.0 if rnd < 8 else 300.0
        inp = slot_inputs(ctx, d, rnd)
        plan = pl.plan(inp)
        m = int(plan.directives.modules.modules[0])
        ranks.append([4, 8, 16, 32][m] if m >= 0 else 0)
        success.append(float(plan.extra["planned_success"][0]))
        delivered = plan.selected & (rng.random(K) < plan.extra["planned_success"])
        pl.observe(inp, plan, RoundOutcome(delivered, plan.selected * 0.9, np.where(plan.selected, 0.1, 0.0),
                                           np.zeros(K), np.zeros(K), 1.0))
    return ranks, success


@pytest.mark.slow   # 6-12 s each on a shared CPU
@pytest.mark.parametrize("risk", [
    "theorem",
    pytest.param("ensemble", marks=pytest.mark.xfail(strict=True, reason=(
        "measured: the sqrt(r) generalisation term of our ensemble bound keeps the worsening device on "
        "rank 32 at 19-25% success until round 19-23 (seeds 0-2); rounds 16-23 mean rank 22-30"))),
])
@pytest.mark.parametrize("seed", [0, 1])
def test_mechanism_multi_device_worsening_device_moves_to_a_smaller_module(risk, seed):
    # the Theorem-1 bound's benefit of a device to module m is s_km (D_k/D)(4 mu zeta1 G_m / L + c_2 + ...):
    # the success probability decides once the module gaps are comparable (measured, seeds 0-2: rank 16 in
    # rounds 2-11 at 40 m, rank 4 from round 13 at 300 m, success 0.43-0.59)
    ranks, success = worsening_device_run(risk, seed)
    before = [r for r in ranks[:8] if r]
    after = ranks[16:]
    assert before and all(r > 0 for r in after)                 # it keeps taking part
    assert max(after) < min(before)                             # on a smaller module than any before
    assert min(success[16:]) > 0.3                              # where its uploads get through


def test_dissimilarity_hint_raises_a_devices_benefit():
    # Theorem 1's heterogeneity term: a device measured as more dissimilar is worth more to every module
    ctx = slot_context(K=6, n=6)
    pl = SwitchingPlanner({}, ctx)
    inp = slot_inputs(ctx, np.full(6, 100.0), 0)
    delta = np.array([0.0, 2.0, 0.0, 0.0, 0.0, 0.0])
    hints = Hints(modules=inp.hints.modules, dissimilarity=DissimilarityHint(delta, np.ones(6, bool)))
    inp_h = RoundInputs(**{**inp.__dict__, "hints": hints})
    plan = pl.plan(inp_h)
    np.testing.assert_allclose(plan.extra["dissimilarity"], delta)

    def costs_at_idle(i):   # eq. 9 at one assignment, so only the hint differs
        ranks, S = pl.modules(i)
        B, w_e = ctx.total_bandwidth_hz / 6, np.full(6, pl.options.energy_coefficient)
        return pl.module_costs(np.zeros((6, len(ranks)), bool), np.full(6, B), np.full(6, 0.2), i, S,
                               pl.risk_model(i, ranks), w_e)[0]
    base, cost = costs_at_idle(inp), costs_at_idle(inp_h)
    assert np.all(cost[1] < base[1]) and np.allclose(np.delete(cost, 1, 0), np.delete(base, 1, 0))


def test_observe_steps_the_module_gaps_with_the_deliveries_by_hand():
    ctx = slot_context(K=4, n=4)
    pl = SwitchingPlanner({"switching": "greedy"}, ctx)   # greedy: round 0 schedules someone
    inp = slot_inputs(ctx, np.full(4, 60.0), 0)
    plan = pl.plan(inp)
    assert plan.num_selected >= 2
    g0 = plan.extra["module_gap"]
    np.testing.assert_allclose(g0, 1.0 - np.array([4, 8, 16, 32]) ** -0.5)      # G_m(0) = g_fm - c_cap r^-1/2
    mods = plan.directives.modules.modules
    delivered = plan.selected.copy()
    delivered[np.flatnonzero(plan.selected)[0]] = False                          # one upload lost
    pl.observe(inp, plan, RoundOutcome(delivered, plan.selected * 0.9, np.zeros(4), np.zeros(4), np.zeros(4), 1.0))
    w = ctx.data_sizes / ctx.data_sizes.sum()
    for m in range(4):
        got = delivered & (mods == m)
        if not got.any():
            assert pl.module_gap[m] == g0[m]                                     # nobody delivered: kept
            continue
        phi = w[got].sum()
        want = (1 - 0.1 + 0.4 * 0.1 * (1 - phi)) * g0[m] + 0.01 * (1 - phi)      # delta = 0 without a hint
        assert pl.module_gap[m] == pytest.approx(want, rel=1e-12)


def test_theorem_foundation_gap_below_the_capacity_term_is_a_config_error():
    ctx = slot_context(K=4, n=4)
    with pytest.raises(ConfigError, match="allocation.options.risk_foundation_gap = 0.3.*fix"):
        SwitchingPlanner({"risk_foundation_gap": 0.3}, ctx).plan(slot_inputs(ctx, np.full(4, 60.0), 0))


def test_mechanism_adaptive_power_saves_transmit_energy_at_equal_delivery():
    # energy priced (default lambda): adaptive power spends less than p_max on the same devices,
    # with the same modules, for nearly the same expected deliveries at the planned power
    # (measured, theorem bound: 2.236 J vs 2.400 J, 20.15 vs 20.26 deliveries; the ensemble bound
    # saves more, 1.774 J, but delivers 3.6% less: 17.58 vs 18.24)
    ctx = slot_context(K=12, n=4)
    d = np.sqrt(np.random.default_rng(3).uniform(30**2, 250**2, 12))
    tx, deliv = {}, {}
    for power in ("adaptive", "max"):
        pl = SwitchingPlanner({"power": power, "switching": "greedy"}, ctx)
        tx[power], deliv[power], mods = 0.0, 0.0, []
        for rnd in range(6):
            inp = slot_inputs(ctx, d, rnd)
            plan = pl.plan(inp)
            tx[power] += float(np.sum(plan.power_w) * 0.5)            # p T per upload
            deliv[power] += float(np.sum(plan.extra["planned_success"]))
            mods.append(plan.directives.modules.modules.copy())
            pl.observe(inp, plan, outcome(plan, 0.1))
        if power == "adaptive":
            mods_adaptive = mods
    assert all(np.array_equal(a, b) for a, b in zip(mods_adaptive, mods))
    assert tx["adaptive"] < 0.95 * tx["max"]
    assert deliv["adaptive"] >= 0.99 * deliv["max"]


def test_greedy_has_no_long_term_state():
    # greedy optimises the round's slice only: the same round gives the same plan whatever came before
    ctx = slot_context()
    d = np.linspace(40.0, 300.0, 12)
    used = SwitchingPlanner({"switching": "greedy"}, ctx)
    for rnd in range(5):
        plan = used.plan(slot_inputs(ctx, d * (1 + 0.1 * rnd), rnd))
        used.observe(slot_inputs(ctx, d, rnd), plan, outcome(plan, 3.0))
    used.multiplier = np.full(12, 7.0)                         # long-term state greedy must ignore
    used.x_relaxed = np.full((12, 4), 0.25)
    used.energy_queue = np.full(12, 5.0)
    fresh = SwitchingPlanner({"switching": "greedy"}, ctx)
    fresh.module_samples = used.module_samples.copy()          # the bound's learning state: shared
    fresh.module_gap = used.module_gap.copy()
    fresh = fresh.plan(slot_inputs(ctx, d, 5))
    again = used.plan(slot_inputs(ctx, d, 5))
    np.testing.assert_array_equal(again.directives.modules.modules, fresh.directives.modules.modules)
    np.testing.assert_allclose(again.bandwidth_hz, fresh.bandwidth_hz, rtol=1e-9)


def test_one_shot_switches_once_then_runs_vanilla_fedlora():
    ctx = slot_context(K=12, n=4)
    d = np.linspace(40.0, 300.0, 12)
    pl = SwitchingPlanner({"switching": "one_shot"}, ctx)
    seen, chosen = {}, set()
    for rnd in range(6):
        inp = slot_inputs(ctx, d[::-1] if rnd >= 3 else d, rnd)    # channels change: modules do not
        plan = pl.plan(inp)
        sel = plan.selected
        assert plan.num_selected == 4
        np.testing.assert_allclose(plan.bandwidth_hz[sel], ctx.total_bandwidth_hz / 4)   # equal split
        np.testing.assert_allclose(plan.power_w[sel], 0.2)                              # p_max
        for k in np.flatnonzero(sel):
            assert seen.setdefault(int(k), int(plan.directives.modules.modules[k])) == plan.directives.modules.modules[k]
        chosen.add(tuple(np.flatnonzero(sel)))
        pl.observe(inp, plan, outcome(plan, 0.1))
    assert len(chosen) > 1     # random scheduling


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_online_round_zero_schedules_from_the_relaxed_participation(seed):
    # a run starts from x = 0: one eq.-12 step spreads each device's mass over modules of similar
    # cost; rounding must read participation from sum_m x_m (as (7f) and eq. 11 do), so the first
    # round schedules the devices the step moved in, up to N, instead of nobody
    ctx = context(K=4, n=2, seed=seed)
    pl = SwitchingPlanner({}, ctx)
    plan = pl.plan(inputs(ctx, 0))
    x = plan.extra["x_relaxed"]
    moved_in = x.sum(axis=1) >= 0.5
    assert moved_in.any() and plan.num_selected == min(int(moved_in.sum()), 2)
    assert np.all(moved_in[plan.selected])
    mods = plan.directives.modules.modules
    np.testing.assert_array_equal(mods[plan.selected], np.argmax(x, axis=1)[plan.selected])


def test_online_step_follows_eqs_11_and_12_by_hand():
    ctx = slot_context(K=6, n=6)
    d = np.full(6, 100.0)
    pl = SwitchingPlanner({"primal_step": 0.3, "dual_step": 0.2}, ctx)
    inp = slot_inputs(ctx, d, 0)
    p0 = pl.plan(inp)
    pl.observe(inp, p0, outcome(p0, 0.1))
    c = pl.prev_cost
    sigma = -c.min()
    rho = 0.5 * 6 / 6
    lam = np.maximum(pl.multiplier + 0.2 * sigma * (rho - pl.x_relaxed.sum(axis=1)), 0.0)
    from airtune.allocation.switching.online import project_capped_box
    x_want = project_capped_box(pl.x_relaxed - 0.3 / sigma * (c - lam[:, None]))
    p1 = pl.plan(slot_inputs(ctx, d, 1))
    np.testing.assert_allclose(p1.extra["multiplier"], lam, rtol=1e-12)
    np.testing.assert_allclose(p1.extra["x_relaxed"], x_want, rtol=1e-12, atol=1e-15)


def test_energy_queue_of_the_variant_follows_the_measured_energy():
    ctx = context(K=10, n=3)
    pl = SwitchingPlanner({"energy_budget_j": 0.4, "energy_constraints": True}, ctx)
    plan = pl.plan(inputs(ctx))
    pl.observe(inputs(ctx), plan, outcome(plan, 1.0))
    assert np.allclose(pl.energy_queue, np.where(plan.selected, 1.0 - 0.4, 0.0))
    off = SwitchingPlanner({"energy_budget_j": 0.4}, ctx)       # default: energy priced, no budgets
    plan = off.plan(inputs(ctx))
    off.observe(inputs(ctx), plan, outcome(plan, 1.0))
    assert np.all(off.energy_queue == 0)


@pytest.mark.parametrize("switching", ["online", "one_shot"])
def test_state_dict_resumes_exactly(switching):
    ctx = slot_context()
    d = np.linspace(40.0, 300.0, 12)
    a = SwitchingPlanner({"switching": switching}, ctx)
    plans_a = []
    for rnd in range(4):
        plan = a.plan(slot_inputs(ctx, d, rnd))
        a.observe(slot_inputs(ctx, d, rnd), plan, outcome(plan, 0.1))
        plans_a.append(plan)
        if rnd == 1:
            saved = a.state_dict()
    b = SwitchingPlanner({"switching": switching}, ctx)
    b.load_state_dict(saved)
    for rnd in (2, 3):
        plan = b.plan(slot_inputs(ctx, d, rnd))
        b.observe(slot_inputs(ctx, d, rnd), plan, outcome(plan, 0.1))
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
    assert any("allocation.options.module_ranks" in e for e in allocator_option_errors(
        Config(allocation={"name": "model_switching", "options": {"module_ranks": [4, 8]}})))


def test_options_are_validated_with_the_field_named():
    cfg = Config(allocation={"name": "model_switching", "options": {"switching": "dual_ascent"}})
    errs = allocator_option_errors(cfg)
    assert any("allocation.options.switching" in e and "dual_ascent" in e for e in errs)
    cfg = Config(allocation={"name": "model_switching", "options": {"V": 10.0, "power": "max"}})
    assert allocator_option_errors(cfg) == []


@pytest.mark.parametrize("switching", ["online", "one_shot"])
def test_plan_does_not_change_the_planner_state_observe_commits_it(switching):
    ctx = slot_context()
    d = np.linspace(40.0, 300.0, 12)
    pl = SwitchingPlanner({"switching": switching}, ctx)

    def state():
        return {k: (None if v is None else np.array(v, copy=True)) for k, v in pl.state_dict().items()}

    for rnd in range(3):
        before = state()
        plan, again = pl.plan(slot_inputs(ctx, d, rnd)), pl.plan(slot_inputs(ctx, d, rnd))
        after = state()
        assert all((b is None and a is None) or np.array_equal(b, a) for b, a in zip(before.values(), after.values()))
        np.testing.assert_array_equal(plan.directives.modules.modules, again.directives.modules.modules)
        pl.observe(slot_inputs(ctx, d, rnd), plan, outcome(plan, 0.1))
        assert np.array_equal(pl.multiplier, plan.extra["multiplier"])
