"""The ONLY module that touches PEFT.

Strategies see a model's trainable state as ``dict[str, Tensor]``: the LoRA factors
(``...lora_A.weight`` of shape (r, d_in), ``...lora_B.weight`` of shape (d_out, r)) and the task
head. Keys are PEFT's own state-dict keys without the adapter name, i.e. exactly what
``peft.get_peft_model_state_dict(model, adapter_name=...)`` returns, so that a saved state
loads with ``PeftModel.from_pretrained``.

Heterogeneous ranks on one shared base model
--------------------------------------------
One frozen base model serves every simulated device. Devices of different LoRA ranks use PEFT's
multi-adapter support: one adapter per distinct rank, named :func:`rank_adapter_name` (``"r2"``,
``"r4"``, ...), all injected into the same layers of the same base model. Exactly one adapter is
*active*: the state functions below (:func:`trainable_state`, :func:`load_trainable_state`,
:func:`trainable_params`) read and write the active adapter only, and only the active adapter's
parameters (and its copy of the head) require gradients. PEFT keeps one copy of the head
(``modules_to_save``) per adapter; the head is federated like the factors, so every state a
strategy sends carries it and :func:`load_trainable_state` copies it into the active adapter's
copy: every adapter sees the same global head.

Single-rank runs (FedIT) keep PEFT's ``"default"`` adapter and never switch.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterable, Sequence
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


def rank_adapter_name(rank: int) -> str:
    """Name of the adapter that devices of LoRA rank ``rank`` train (``"r8"``)."""
    return f"r{int(rank)}"


def _peft_config(spec: LoraSpec, head: list[str], rank: int):
    from peft import LoraConfig, TaskType

    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=int(rank),
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=list(spec.target_modules),
        modules_to_save=list(head),  # PEFT extends this list in place for SEQ_CLS: never share it
    )


def inject_lora(model: nn.Module, spec: LoraSpec, head_modules: tuple[str, ...],
                ranks: Sequence[int] | None = None) -> nn.Module:
    """Wrap ``model`` in a PEFT LoRA model; the head modules are trainable (``modules_to_save``).

    ``ranks=None``: one adapter ``"default"`` of rank ``spec.rank`` (homogeneous LoRA). Otherwise
    one adapter per distinct rank in ``ranks`` (:func:`rank_adapter_name`), created in ascending
    rank order on the same base model; the largest is left active.
    """
    from peft import get_peft_model

    present = {n.split(".")[-1] for n, _ in model.named_modules()}
    head = [h for h in head_modules if h.split(".")[-1] in present]
    if ranks is None:
        return get_peft_model(model, _peft_config(spec, head, spec.rank))
    distinct = sorted({int(r) for r in ranks})
    if not distinct or distinct[0] < 1:
        raise ValueError(f"adapter ranks must be >= 1; got {list(ranks)}.")
    peft_model = get_peft_model(model, _peft_config(spec, head, distinct[0]),
                                adapter_name=rank_adapter_name(distinct[0]))
    base_name = peft_model.peft_config[rank_adapter_name(distinct[0])].base_model_name_or_path
    for r in distinct[1:]:
        cfg = _peft_config(spec, head, r)
        cfg.base_model_name_or_path = base_name  # add_adapter leaves it unset; saved configs need it
        peft_model.add_adapter(rank_adapter_name(r), cfg)
    peft_model.set_adapter(rank_adapter_name(distinct[-1]))
    return peft_model


def is_peft(model: nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def active_adapter(model: nn.Module) -> str | None:
    """Name of the active adapter (None for a plain model)."""
    return model.active_adapter if is_peft(model) else None


def adapter_rank(model: nn.Module, name: str | None = None) -> int:
    """LoRA rank of adapter ``name`` (default: the active one)."""
    return int(model.peft_config[name or model.active_adapter].r)


def use_adapter(model: nn.Module, name: str, rank: int | None = None) -> None:
    """Activate adapter ``name``; create it first (rank ``rank``, other settings copied from the
    active adapter) if the model does not have it yet, e.g. after a HetLoRA rank prune.

    Afterwards only ``name``'s LoRA factors and head copy require gradients.
    """
    if name not in model.peft_config:
        if rank is None:
            raise KeyError(f"model has no adapter '{name}' (adapters: {sorted(model.peft_config)}); "
                           "pass its rank to create it")
        cfg = copy.deepcopy(model.peft_config[model.active_adapter])
        cfg.r = int(rank)
        cfg.inference_mode = False
        model.add_adapter(name, cfg)
    elif rank is not None and adapter_rank(model, name) != int(rank):
        raise ValueError(f"adapter '{name}' has rank {adapter_rank(model, name)}, not {rank}")
    if model.active_adapter != name:
        model.set_adapter(name)


def _canonical(name: str, adapter: str | None) -> str:
    """PEFT parameter name -> PEFT saved key (adapter name and wrapper levels removed)."""
    if adapter is not None:
        name = name.replace(f".{adapter}.", ".")
    return name.replace(".modules_to_save.", ".").replace("original_module.", "")


def _adapter_param_names(model: nn.Module, adapter: str) -> Iterable[tuple[str, nn.Parameter]]:
    """Parameters that belong to adapter ``adapter``: its LoRA factors and its head copy."""
    lora = (f".lora_A.{adapter}.", f".lora_B.{adapter}.", f".modules_to_save.{adapter}.")
    for name, p in model.named_parameters():
        if any(tag in name for tag in lora):
            yield name, p


def state_params(model: nn.Module) -> dict[str, nn.Parameter]:
    """Canonical key -> parameter of everything a device trains and sends, frozen or not.

    PEFT model: the active adapter's LoRA factors and head copy (FFA-LoRA's frozen ``A`` included).
    Plain model (full fine-tuning): every parameter that requires grad.
    """
    if not is_peft(model):
        return {n: p for n, p in model.named_parameters() if p.requires_grad}
    adapter = model.active_adapter
    return {_canonical(n, adapter): p for n, p in _adapter_param_names(model, adapter)}


def trainable_params(model: nn.Module) -> dict[str, nn.Parameter]:
    """Canonical key -> parameter that requires grad (what the optimiser updates).

    The canonical key is PEFT's saved key (adapter name removed, the ``modules_to_save`` copy
    mapped onto the original module name); for a plain model it is the parameter name.
    """
    return {k: p for k, p in state_params(model).items() if p.requires_grad}


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copy of the active adapter's tensors (LoRA factors and head; all weights for full
    fine-tuning), keyed as ``peft.get_peft_model_state_dict(model, adapter_name=active)``."""
    return {k: p.detach().clone() for k, p in state_params(model).items()}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Write ``state`` into the active adapter in place (keys and shapes must match exactly)."""
    params = state_params(model)
    missing = params.keys() - state.keys()
    extra = state.keys() - params.keys()
    if missing or extra:
        raise KeyError(f"state does not match the model's active adapter {active_adapter(model)!r}: "
                       f"missing {sorted(missing)[:3]}, unexpected {sorted(extra)[:3]}")
    with torch.no_grad():
        for k, p in params.items():
            if p.shape != state[k].shape:
                raise ValueError(f"{k}: state has shape {tuple(state[k].shape)}, the active adapter "
                                 f"{active_adapter(model)!r} {tuple(p.shape)}")
            p.copy_(state[k])


def freeze_factors(model: nn.Module, frozen: Iterable[str] = ()) -> None:
    """Set which of the active adapter's factors are frozen (e.g. ``("lora_A",)`` for FFA-LoRA).

    Every other tensor of the active adapter (and its head copy) is made trainable again.
    A plain model (full fine-tuning) has no factors: ``frozen`` must be empty.
    """
    frozen = tuple(frozen)
    if not is_peft(model):
        if frozen:
            raise ValueError(f"cannot freeze {frozen} of a model without LoRA adapters")
        return
    for name, p in _adapter_param_names(model, model.active_adapter):
        p.requires_grad_(not any(f".{f}." in name for f in frozen))


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


def lora_in_out_dims(model: nn.Module) -> list[tuple[int, int]]:
    """``(d_in, d_out)`` of every adapted matrix of the active adapter (payload models: a rank-r
    adapter sends ``r * sum(d_in + d_out)`` values)."""
    state = trainable_state(model)
    return [(int(state[a].shape[1]), int(state[b].shape[0])) for a, b in lora_pairs(state).values()]


def head_keys(state: dict[str, torch.Tensor]) -> list[str]:
    """Keys of the non-LoRA trainable tensors (the task head)."""
    return [k for k in state if ".lora_A." not in k and ".lora_B." not in k]


# ----------------------------------------------------------------------------- base weights
def base_weights(model: nn.Module, prefixes: Iterable[str]) -> dict[str, torch.Tensor]:
    """Copies of the frozen base weights ``W: (d, n)`` of the adapted layers ``prefixes``
    (the prefixes of :func:`lora_pairs`, which are the layers' module names)."""
    return {p: model.get_submodule(p).get_base_layer().weight.detach().clone() for p in prefixes}


def set_base_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Overwrite the frozen base weights of adapted layers in place (FLoRA's merge, and its undo)."""
    with torch.no_grad():
        for p, w in weights.items():
            base = model.get_submodule(p).get_base_layer().weight
            if base.shape != w.shape:
                raise ValueError(f"{p}: base weight has shape {tuple(base.shape)}, got {tuple(w.shape)}")
            base.copy_(w)


# ----------------------------------------------------------------------------- saving, loading
def save_adapter(model: nn.Module, out_dir: Path, adapter: str | None = None) -> None:
    """Save one adapter (default: the active one) in PEFT format into ``out_dir`` itself
    (``adapter_config.json`` + ``adapter_model.safetensors``), loadable with
    ``PeftModel.from_pretrained(base, out_dir)`` whatever its name and rank."""
    out_dir = Path(out_dir)
    name = adapter or model.active_adapter
    model.save_pretrained(str(out_dir), selected_adapters=[name])
    if name != ADAPTER:  # PEFT writes a non-default adapter into a sub-folder named after it
        sub = out_dir / name
        for f in sub.iterdir():
            shutil.move(str(f), str(out_dir / f.name))
        sub.rmdir()


def save_adapter_state(model: nn.Module, state: dict[str, torch.Tensor], rank: int, out_dir: Path) -> None:
    """Write ``state`` (PEFT saved keys, LoRA factors of rank ``rank`` and the head) as a PEFT
    adapter without adding it to ``model``; the other settings (alpha, targets, head modules,
    base model) are those of ``model``'s active adapter. For exports whose rank no device trains
    (FLoRA's merged, FlexLoRA's full-size global update)."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = copy.deepcopy(model.peft_config[model.active_adapter])
    cfg.r = int(rank)
    cfg.inference_mode = True
    cfg.save_pretrained(str(out_dir))
    save_file({k: v.detach().contiguous() for k, v in state.items()},
              str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
