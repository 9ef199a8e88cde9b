"""The ONLY module that touches PEFT.

Strategies see a model's trainable state as ``dict[str, Tensor]``: the LoRA factors
(``...lora_A.weight`` of shape (r, d_in), ``...lora_B.weight`` of shape (d_out, r)) and the task
head. Keys are PEFT's own state-dict keys without the adapter name, i.e. exactly what
``peft.get_peft_model_state_dict`` returns, so that a saved state loads with
``PeftModel.from_pretrained``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

ADAPTER = "default"


@dataclass(frozen=True)
class LoraSpec:
    """LoRA hyper-parameters: ``delta W = (alpha / rank) * B @ A``."""

    rank: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...]

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def inject_lora(model: nn.Module, spec: LoraSpec, head_modules: tuple[str, ...]) -> nn.Module:
    """Wrap ``model`` in a PEFT LoRA model; the head modules are trainable (``modules_to_save``)."""
    from peft import LoraConfig, TaskType, get_peft_model

    present = {n.split(".")[-1] for n, _ in model.named_modules()}
    head = [h for h in head_modules if h.split(".")[-1] in present]
    cfg = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=spec.rank,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=list(spec.target_modules),
        modules_to_save=head,
    )
    return get_peft_model(model, cfg)


def is_peft(model: nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def trainable_params(model: nn.Module) -> dict[str, nn.Parameter]:
    """Canonical key -> trainable parameter.

    For a PEFT model the canonical key is PEFT's saved key (adapter name removed, the
    ``modules_to_save`` copy mapped onto the original module name). For a plain model
    (full fine-tuning) it is the parameter name.
    """
    out: dict[str, nn.Parameter] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = name.replace(f".{ADAPTER}.", ".").replace(f".modules_to_save.", ".")
        key = key.replace("original_module.", "")
        out[key] = p
    return out


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copy of every trainable tensor (LoRA factors and head; all weights for full fine-tuning)."""
    return {k: p.detach().clone() for k, p in trainable_params(model).items()}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Write ``state`` into the model's trainable parameters in place (keys must match exactly)."""
    params = trainable_params(model)
    missing = params.keys() - state.keys()
    extra = state.keys() - params.keys()
    if missing or extra:
        raise KeyError(f"state does not match the model: missing {sorted(missing)[:3]}, unexpected {sorted(extra)[:3]}")
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(state[k])


def lora_pairs(state: dict[str, torch.Tensor]) -> dict[str, tuple[str, str]]:
    """Map each adapted layer's prefix to its (A key, B key)."""
    pairs: dict[str, tuple[str, str]] = {}
    for k in state:
        if ".lora_A." in k:
            prefix = k.split(".lora_A.")[0]
            b = k.replace(".lora_A.", ".lora_B.")
            if b not in state:
                raise KeyError(f"LoRA factor {k} has no matching B factor")
            pairs[prefix] = (k, b)
    return pairs


def head_keys(state: dict[str, torch.Tensor]) -> list[str]:
    """Keys of the non-LoRA trainable tensors (the task head)."""
    return [k for k in state if ".lora_A." not in k and ".lora_B." not in k]


def save_adapter(model: nn.Module, out_dir: Path) -> None:
    """Save the model's current adapter in PEFT format (adapter_config.json + adapter_model.safetensors)."""
    model.save_pretrained(str(out_dir))


def load_adapter(base: nn.Module, adapter_dir: Path) -> nn.Module:
    """Load a saved adapter onto a base model (PEFT's ``PeftModel.from_pretrained``)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base, str(adapter_dir))
