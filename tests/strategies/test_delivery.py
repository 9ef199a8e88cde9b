"""Every heterogeneous-rank strategy: lost updates are ignored; no delivery leaves the model as it was."""

from __future__ import annotations

import pytest
import torch

from airtune.errors import ConfigError
from airtune.registry import STRATEGIES
from airtune.strategies.fedit import FedIT

RANKS = [2, 4, 8, 4]
HETERO = ["hetlora", "flexlora", "ffa_lora", "flora"]


def round_updates(s, server, gen, syn):
    tasks = s.configure_round(0, server, [0, 1, 2, 3], {k: k for k in range(4)}, 1)
    ups = []
    for t, n in zip(tasks, [10, 20, 30, 40]):
        state = {k: v + (0 if (".lora_A." in k and "lora_A" in t.freeze) else
                         torch.randn(v.shape, generator=gen, dtype=v.dtype)) for k, v in t.state.items()}
        ups.append(syn.update(t.device, state, n, **t.memo))
    return ups


def comparable(server):
    out = dict(server.tensors)
    for name in ("delta", "merged"):
        for p, t in (server.extra.get(name) or {}).items():
            out[f"{name}:{p}"] = t
    return out


@pytest.mark.parametrize("name", HETERO)
def test_undelivered_updates_are_ignored(name, syn, gen):
    s = STRATEGIES.get(name)(context=syn.context(RANKS))
    server = s.init_state(syn.make_state(8, gen, zero_b=True))
    ups = round_updates(s, server, gen, syn)
    kept = [u for u in ups if u.device in {1, 3}]
    with_lost, rep = s.aggregate(0, server, ups, delivered={1, 3})
    only_kept, _ = s.aggregate(0, server, kept, delivered={1, 3})
    assert rep["aggregated"] == 2
    a, b = comparable(with_lost), comparable(only_kept)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


@pytest.mark.parametrize("name", HETERO)
def test_nothing_delivered_keeps_the_global_model(name, syn, gen):
    s = STRATEGIES.get(name)(context=syn.context(RANKS))
    server = s.init_state(syn.make_state(8, gen, zero_b=True))
    ups = round_updates(s, server, gen, syn)
    new, rep = s.aggregate(0, server, ups, delivered=set())
    assert rep["aggregated"] == 0
    a, b = comparable(new), comparable(server)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", HETERO)
def test_options_are_validated_and_context_required(name, syn):
    cls = STRATEGIES.get(name)
    with pytest.raises(ConfigError, match="unknown option"):
        cls({"no_such_knob": 1})
    with pytest.raises(ConfigError, match="context"):
        cls().context  # noqa: B018  (the property raises)
    assert cls.supports_heterogeneous_ranks and cls.__doc__ and cls.Options.model_config["extra"] == "forbid"
    module = __import__(cls.__module__, fromlist=["_"])
    key = {"hetlora": "cho2024hetlora", "flexlora": "bai2024flexlora", "ffa_lora": "sun2024ffalora",
           "flora": "wang2024flora"}[name]
    assert key in module.__doc__ and "papers.md §4." in module.__doc__


def test_fedit_refuses_heterogeneous_ranks(syn):
    with pytest.raises(ConfigError, match="uniform_rank"):
        FedIT(context=syn.context(RANKS))
    FedIT(context=syn.context([8, 8, 8]))  # one shared rank equal to lora.rank: fine
