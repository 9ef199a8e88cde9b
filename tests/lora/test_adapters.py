"""adapters.py on the real MiniLM: one adapter per rank on one base model, PEFT key format,
gradient switching, the shared head, freezing, base weights, and saved adapters of any rank."""

from __future__ import annotations

import json

import pytest
import torch

from airtune.lora.adapters import (
    LoraSpec,
    active_adapter,
    adapter_rank,
    base_weights,
    freeze_factors,
    inject_lora,
    load_trainable_state,
    lora_pairs,
    save_adapter,
    save_adapter_state,
    set_base_weights,
    state_params,
    trainable_params,
    trainable_state,
    use_adapter,
)
from airtune.models.zoo import load_classifier, resolve_model

SPEC = LoraSpec(8, 16.0, 0.0, ("query", "value"))


@pytest.fixture(scope="module")
def minilm():
    return resolve_model("minilm-l6")


@pytest.fixture(scope="module")
def multi(minilm):
    torch.manual_seed(0)
    return inject_lora(load_classifier(minilm, 2), SPEC, minilm.head_modules, ranks=[8, 2, 4, 2])


def randomised(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * 0.05 for k, v in state.items()}


def test_one_adapter_per_rank_on_one_base_model(multi):
    assert sorted(multi.peft_config) == ["r2", "r4", "r8"] and active_adapter(multi) == "r8"
    bases = {n for n, _ in multi.named_parameters() if "base_layer" in n}
    assert len(bases) == 24  # 6 layers x (query, value) x (weight, bias): one shared base model


@pytest.mark.parametrize("name,rank", [("r2", 2), ("r4", 4), ("r8", 8)])
def test_state_is_peft_saved_state_of_the_active_adapter(multi, name, rank):
    from peft import get_peft_model_state_dict

    use_adapter(multi, name)
    assert adapter_rank(multi) == rank
    state, ref = trainable_state(multi), get_peft_model_state_dict(multi, adapter_name=name)
    assert state.keys() == ref.keys() and all(torch.equal(state[k], ref[k]) for k in state)
    assert all(state[a].shape[0] == rank for a, _ in lora_pairs(state).values())
    grads = {n for n, p in multi.named_parameters() if p.requires_grad}
    assert grads and all(f".{name}." in n for n in grads)  # only the active adapter and its head copy
    assert len(grads) == len(state) == len(trainable_params(multi))


def test_head_is_shared_through_the_state(multi):
    use_adapter(multi, "r2")
    s2 = randomised(trainable_state(multi), 1)
    load_trainable_state(multi, s2)
    head = {k: v for k, v in s2.items() if ".lora_" not in k}
    use_adapter(multi, "r8")
    s8 = trainable_state(multi)
    load_trainable_state(multi, {**s8, **head})  # the strategy sends the federated head with every state
    x = {"input_ids": torch.tensor([[101, 2023, 3185, 102]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    seen = {}
    hook = multi.get_submodule("base_model.model.classifier").register_forward_hook(
        lambda mod, args, out: seen.update(x=args[0], out=out))
    multi.eval()
    try:
        with torch.no_grad():
            logits = multi(**x).logits
    finally:
        hook.remove()
    expected = seen["x"] @ head["base_model.model.classifier.weight"].T + head["base_model.model.classifier.bias"]
    torch.testing.assert_close(seen["out"], expected)
    torch.testing.assert_close(logits, expected)


def test_switching_loads_only_the_active_adapter(multi):
    use_adapter(multi, "r4")
    before = {n: p.detach().clone() for n, p in multi.named_parameters()}
    load_trainable_state(multi, randomised(trainable_state(multi), 2))
    changed = {n for n, p in multi.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(".r4." in n for n in changed)
    with pytest.raises(ValueError, match="shape"):
        use_adapter(multi, "r2")
        load_trainable_state(multi, before_state := {k: torch.zeros(4, v.shape[1]) if ".lora_A." in k else v
                                                     for k, v in trainable_state(multi).items()})
    assert before_state


def test_missing_rank_adapter_is_created_on_demand(multi):
    use_adapter(multi, "r3", rank=3)
    assert active_adapter(multi) == "r3" and adapter_rank(multi) == 3
    assert multi.peft_config["r3"].lora_alpha == SPEC.alpha
    with pytest.raises(KeyError, match="pass its rank"):
        use_adapter(multi, "r5")


def test_freeze_A_then_unfreeze(multi):
    use_adapter(multi, "r4")
    freeze_factors(multi, ("lora_A",))
    keys = trainable_params(multi).keys()
    assert not any(".lora_A." in k for k in keys) and any(".lora_B." in k for k in keys)
    assert len(state_params(multi)) == len(trainable_state(multi)) > len(keys)  # A still in the state
    freeze_factors(multi)
    assert len(trainable_params(multi)) == len(state_params(multi))


def test_base_weights_set_and_restore(multi):
    prefixes = list(lora_pairs(trainable_state(multi)))
    w0 = base_weights(multi, prefixes)
    set_base_weights(multi, {p: w + 1.0 for p, w in w0.items()})
    assert all(torch.equal(w, w0[p] + 1.0) for p, w in base_weights(multi, prefixes).items())
    set_base_weights(multi, w0)
    assert all(torch.equal(w, w0[p]) for p, w in base_weights(multi, prefixes).items())


@pytest.mark.parametrize("name,rank", [("r2", 2), ("r8", 8)])
def test_saved_adapter_of_any_rank_loads_with_peft(multi, minilm, tmp_path, name, rank):
    from peft import PeftModel, get_peft_model_state_dict

    use_adapter(multi, name)
    state = randomised(trainable_state(multi), rank)
    load_trainable_state(multi, state)
    save_adapter(multi, tmp_path)
    assert (tmp_path / "adapter_model.safetensors").exists() and not (tmp_path / name).exists()
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["r"] == rank
    loaded = PeftModel.from_pretrained(load_classifier(minilm, 2), str(tmp_path))
    back = get_peft_model_state_dict(loaded)
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)


def test_state_saved_without_an_adapter_in_the_model(multi, minilm, tmp_path):
    from peft import PeftModel, get_peft_model_state_dict

    use_adapter(multi, "r8")
    template = trainable_state(multi)
    state = {k: (torch.randn(16, v.shape[1]) if ".lora_A." in k else torch.randn(v.shape[0], 16)
                 if ".lora_B." in k else v) for k, v in template.items()}
    save_adapter_state(multi, state, 16, tmp_path)
    assert "r16" not in multi.peft_config
    loaded = PeftModel.from_pretrained(load_classifier(minilm, 2), str(tmp_path))
    back = get_peft_model_state_dict(loaded)
    assert loaded.peft_config["default"].r == 16 and all(torch.equal(back[k], state[k]) for k in state)
