"""model_switching strategy: per-module state, per-module aggregation, subscriptions, CLI run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from airtune.allocation.exchange import Directives, ModuleDirective
from airtune.allocation.result import Allocation
from airtune.errors import ConfigError
from airtune.strategies.base import tensor_bits
from airtune.strategies.switching import ModelSwitching, subscriptions, update_dissimilarity
from airtune.training.engine import ClientUpdate

from .conftest import HEAD, LAYERS, context, make_state


def strategy(ranks=(2, 4, 4), **opts):
    return ModelSwitching({"module_ranks": list(ranks), **opts}, context=context([4] * 5))


def plan(modules):
    modules = np.asarray(modules)
    sel = modules >= 0 if modules.ndim == 1 else modules.any(axis=1)
    return Allocation(sel, sel * 1.0, sel * 0.1, 0.0, True, 1, "",
                      directives=Directives(modules=ModuleDirective(modules)))


def test_init_state_holds_one_module_per_rank_with_zero_b_and_the_initial_head():
    s = strategy()
    server = s.init_state(make_state(4, torch.Generator().manual_seed(0)))
    template = make_state(4, torch.Generator().manual_seed(0))
    for m, r in enumerate((2, 4, 4)):
        st = s.module_state(server, m)
        for p, (d, n) in LAYERS.items():
            A, B = st[f"{p}.lora_A.weight"], st[f"{p}.lora_B.weight"]
            assert A.shape == (r, n) and B.shape == (d, r) and torch.all(B == 0)
            assert A.abs().max() <= 1 / np.sqrt(n) and A.abs().max() > 0
        for k in HEAD:
            assert torch.equal(st[k], template[k])
    a1, a2 = (s.module_state(server, m)[f"{next(iter(LAYERS))}.lora_A.weight"] for m in (1, 2))
    assert not torch.equal(a1, a2)  # two modules of the same rank are distinct


def test_configure_round_gives_each_device_its_modules_adapter():
    s = strategy(max_modules_per_device=2)
    server = s.init_state(make_state(4, torch.Generator().manual_seed(0)))
    mask = np.zeros((5, 3), bool)
    mask[0, 2] = mask[3, 0] = mask[3, 1] = True
    tasks = s.configure_round(0, server, [0, 3], {0: 11, 3: 12}, 2, plan=plan(mask))
    assert [(t.device, t.memo["module"], t.adapter, t.rank) for t in tasks] == [
        (0, 2, "m2", 4), (3, 0, "m0", 2), (3, 1, "m1", 4)]
    assert tasks[0].state.keys() == s.module_state(server, 2).keys()


def test_configure_round_errors_name_the_fix():
    s = strategy()
    server = s.init_state(make_state(4, torch.Generator().manual_seed(0)))
    no_modules = Allocation(np.ones(5, bool), np.ones(5), np.ones(5) * 0.1, 0.0, True, 0, "")
    with pytest.raises(ConfigError, match="allocation.name=model_switching"):
        s.configure_round(0, server, list(range(5)), {k: k for k in range(5)}, 1, plan=no_modules)
    two = np.zeros((5, 3), bool)
    two[0, :2] = True
    with pytest.raises(ConfigError, match="max_modules_per_device"):
        s.configure_round(0, server, [0], {0: 0}, 1, plan=plan(two))


def test_subscriptions_from_indices_and_masks():
    assert subscriptions([1, -1, 0], 3, 2).tolist() == [[False, True], [False, False], [True, False]]
    with pytest.raises(ValueError, match="indices"):
        subscriptions([2, -1, 0], 3, 2)


def test_each_module_is_averaged_over_its_delivered_subscribers_only():
    s = strategy()
    gen = torch.Generator().manual_seed(3)
    server = s.init_state(make_state(4, gen))
    ups = [ClientUpdate(0, make_state(2, gen), 10, 0.0, {"module": 0}),
           ClientUpdate(1, make_state(2, gen), 30, 0.0, {"module": 0}),
           ClientUpdate(2, make_state(4, gen), 20, 0.0, {"module": 1}),   # lost on the uplink
           ClientUpdate(3, make_state(4, gen), 20, 0.0, {"module": 2})]
    new, report = s.aggregate(0, server, ups, delivered={0, 1, 3})
    m0 = s.module_state(new, 0)
    for k, v in m0.items():  # FedAvg by data size, by hand
        assert torch.allclose(v, 0.25 * ups[0].state[k] + 0.75 * ups[1].state[k], atol=1e-12)
    for k, v in s.module_state(new, 1).items():  # nobody delivered module 1: unchanged
        assert torch.equal(v, s.module_state(server, 1)[k])
    for k, v in s.module_state(new, 2).items():
        assert torch.equal(v, ups[3].state[k])
    assert report["module_subscribed"] == [2, 1, 1] and report["module_delivered"] == [2, 0, 1]
    assert new.extra["updates"].tolist() == [2, 0, 1]
    assert [t.memo["module"] for t in strategy(ensemble="trained").eval_tasks(new)] == [0, 2]
    assert len(s.eval_tasks(new)) == 3


def test_planner_hints_are_the_exact_module_payloads():
    s = strategy()
    server = s.init_state(make_state(4, torch.Generator().manual_seed(0)))
    hints = s.planner_hints(server).modules
    assert hints.ranks == (2, 4, 4)
    per_rank = sum(d + n for d, n in LAYERS.values())
    head = sum(int(np.prod(shape)) for shape in HEAD.values())
    assert hints.payload_bits.tolist() == [64 * (r * per_rank + head) for r in (2, 4, 4)]  # float64 states
    assert hints.payload_bits[0] == tensor_bits(s.module_state(server, 0))


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_model_switching_runs_from_the_cli_and_learns(glue_dir, tmp_path):
    from airtune.cli import main

    from ..conftest import tiny_overrides

    out = tmp_path / "run"
    args = ["run", "--out", str(out), "--quiet", "strategy.name=model_switching",
            "allocation.name=model_switching", "strategy.options.module_ranks=[2,4,4]",
            *tiny_overrides(glue_dir, rounds=2, eval_every=2, num_devices=6, devices_per_round=3,
                            **{"train.local_steps": 8, "data.test_subset": 150, "data.partition": "iid",
                               "wireless.link": "error_free", "train.num_threads": 1})]
    assert main(args) == 0  # measured: 0.75 after 3 rounds of this setup
    metrics, clients = read(out / "metrics.jsonl"), read(out / "clients.jsonl")
    assert metrics[-1]["accuracy"] > 0.6  # chance is ~0.5 on SST-2
    counts = np.sum([m["switch_module_counts"] for m in metrics], axis=0)
    # every participant trains exactly one module (the online step may put all on one module in 2 rounds)
    assert 0 < counts.sum() == sum(len(m["selected"]) for m in metrics)
    per_rank, head = 32 * 12 * 768, 32 * 770
    sizes = {per_rank * r + head for r in (2, 4)}
    assert all(c["payload_bits"] in sizes for c in clients if c["selected"])
    assert (out / "checkpoint" / "adapter" / "adapter_model.safetensors").exists()


def test_update_dissimilarity_by_hand():
    # reference 0; updates (1, 0) and (3, 0), weights 1, 1: mean update (2, 0); deviations 1, 1; mean norm 2
    ref = {"w": torch.zeros(2, dtype=torch.float64)}
    ups = [{"w": torch.tensor([1.0, 0.0], dtype=torch.float64)}, {"w": torch.tensor([3.0, 0.0], dtype=torch.float64)}]
    np.testing.assert_allclose(update_dissimilarity(ups, ref, [1.0, 1.0]), [0.5, 0.5], rtol=1e-12)
    # weights 3, 1: mean (1.5, 0); deviations 0.5, 1.5 over 2
    np.testing.assert_allclose(update_dissimilarity(ups, ref, [3.0, 1.0]), [0.25, 0.75], rtol=1e-12)
    assert update_dissimilarity([ref, ref], ref, [1.0, 1.0]).tolist() == [0.0, 0.0]


def test_aggregate_measures_dissimilarity_and_the_hint_fills_the_prior():
    s = strategy()
    gen = torch.Generator().manual_seed(3)
    server = s.init_state(make_state(4, gen))
    hint = s.planner_hints(server).dissimilarity
    assert hint.values.tolist() == [0.0] * 5 and not hint.measured.any()     # nothing measured: prior 0
    ups = [ClientUpdate(0, make_state(2, gen), 10, 0.0, {"module": 0}),
           ClientUpdate(1, make_state(2, gen), 30, 0.0, {"module": 0}),
           ClientUpdate(3, make_state(4, gen), 20, 0.0, {"module": 2})]       # alone in its module
    new, _ = s.aggregate(0, server, ups, delivered={0, 1, 3})
    want = update_dissimilarity([u.state for u in ups[:2]], s.module_state(server, 0), [10.0, 30.0])
    got = new.extra["dissimilarity"]
    np.testing.assert_allclose(got[[0, 1]], want, rtol=1e-12)
    assert np.all(want > 0) and np.isnan(got[[2, 3, 4]]).all()               # one update alone says nothing
    hint = s.planner_hints(new).dissimilarity
    assert hint.measured.tolist() == [True, True, False, False, False]
    np.testing.assert_allclose(hint.values, [want[0], want[1]] + [want.mean()] * 3, rtol=1e-12)


def test_dissimilarity_hint_rejects_bad_values_naming_the_field():
    from airtune.allocation.exchange import DissimilarityHint
    with pytest.raises(ValueError, match="DissimilarityHint.values must be finite"):
        DissimilarityHint(np.array([0.1, np.nan]), np.array([True, False]))
    with pytest.raises(ValueError, match="DissimilarityHint.measured must have shape"):
        DissimilarityHint(np.array([0.1, 0.2]), np.array([True]))


@pytest.mark.slow
def test_dissimilarity_is_measured_from_real_updates(glue_dir, tmp_path):
    # non-IID SST-2, error-free link, greedy switching (the Theorem-1 bound puts every participant on the
    # module of largest gap, so a module aggregates several updates): the strategy measures delta_k and the
    # planner sees a non-zero heterogeneity term from the next round on
    from airtune.cli import main

    from ..conftest import tiny_overrides

    out = tmp_path / "run"
    args = ["run", "--out", str(out), "--quiet", "strategy.name=model_switching",
            "allocation.name=model_switching", "allocation.options.switching=greedy",
            "strategy.options.module_ranks=[2,4]",
            *tiny_overrides(glue_dir, rounds=3, eval_every=3, num_devices=6, devices_per_round=3,
                            **{"train.local_steps": 4, "data.test_subset": 100, "wireless.link": "error_free",
                               "train.num_threads": 1})]
    assert main(args) == 0
    metrics = read(out / "metrics.jsonl")
    measured = [m["dissimilarity_measured"] for m in metrics]
    assert measured[-1] >= 2 and all(a <= b for a, b in zip(measured, measured[1:]))
    first = next(i for i, n in enumerate(measured) if n > 0)
    assert metrics[first]["switch_dissimilarity_mean"] == 0.0      # the hint of round r is measured before it
    assert metrics[first + 1]["switch_dissimilarity_mean"] > 0.0
