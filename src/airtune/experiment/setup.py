"""Build everything a run needs from a validated config: data, model, devices, channel.

Kept apart from the round loop (``runner.py``) so that the loop reads top to bottom.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from airtune.config import Config
from airtune.data.cache import TokenizedDataset, tokenize_cached
from airtune.data.glue import load_glue
from airtune.data.partition import describe, label_counts
from airtune.experiment.seeds import int_seed, rng
from airtune.lora.adapters import LoraSpec, head_keys, inject_lora, trainable_state
from airtune.lora.ranks import assign_device_ranks
from airtune.models.profile import profile_model
from airtune.models.zoo import ModelSpec, load_classifier, load_tokenizer, resolve_model
from airtune.registry import PARTITIONERS, STRATEGIES
from airtune.strategies.base import Strategy, StrategyContext
from airtune.training.device import resolve_device
from airtune.training.precision import resolve_precision
from airtune.wireless.channel import ChannelState, init_channel
from airtune.wireless.devices import DeviceProfiles, sample_device_profiles
from airtune.wireless.link import LinkModel, link_from_config
from airtune.wireless.units import dbm_to_w

log = logging.getLogger("airtune")


@dataclass
class Setup:
    """Everything built once per run (immutable after construction, except the model's weights)."""

    cfg: Config
    spec: ModelSpec
    model: nn.Module
    strategy: Strategy
    initial_state: dict[str, torch.Tensor]
    head_keys: set[str]
    train: TokenizedDataset
    test: TokenizedDataset
    partitions: list[np.ndarray]
    label_counts: np.ndarray             # (K, C)
    channel: ChannelState                # positions and round-0 fading
    devices: DeviceProfiles
    train_flops_per_sample: float
    link: LinkModel                      # the radio link, built once (wireless/link.py)
    samples_per_round: np.ndarray        # (K,) samples a device trains on per round if scheduled
    device_ranks: np.ndarray | None = None  # (K,) LoRA rank of every device; None without LoRA
    precision: str = "fp32"              # model.precision resolved on the training device (fp32 | bf16)


def build_data(cfg: Config, tokenizer, spec: ModelSpec):
    train_txt, test_txt = load_glue(cfg.data.dataset, cfg.data.dir, seed=cfg.seed,
                                    qnli_test_fraction=cfg.data.qnli_test_fraction,
                                    train_subset=cfg.data.train_subset, test_subset=cfg.data.test_subset)
    kw = dict(max_length=cfg.model.max_length, cache_dir=cfg.data.cache_dir, model_key=spec.path)
    train = tokenize_cached(tokenizer, train_txt, split="train", **kw)
    test = tokenize_cached(tokenizer, test_txt, split="test", **kw)
    return train, test, train_txt.num_classes


def build_partitions(cfg: Config, labels: np.ndarray, num_classes: int):
    params = dict(alpha=cfg.data.dirichlet_alpha, min_partition_size=cfg.data.min_partition_size,
                  self_balancing=cfg.data.self_balancing,
                  shards_per_device=cfg.data.shards_per_device)
    parts = PARTITIONERS.get(cfg.data.partition)(labels, cfg.num_devices, rng(cfg.seed, "partition"), **params)
    counts = label_counts(parts, labels, num_classes)
    log.info(describe(parts, labels, num_classes, name=cfg.data.partition))
    for k, row in enumerate(counts):
        log.info("device %d label counts %s", k, row.tolist())
    return parts, counts


def lora_spec(cfg: Config) -> LoraSpec:
    return LoraSpec(cfg.lora.rank, cfg.lora.alpha, cfg.lora.dropout, tuple(cfg.lora.target_modules))


def load_base_model(cfg: Config, spec: ModelSpec, num_classes: int) -> nn.Module:
    """The pre-trained model with a fresh head (seeded); adapters come in :func:`attach_trainable`."""
    torch.manual_seed(int_seed(cfg.seed, "init"))
    return load_classifier(spec, num_classes, cfg.model.dropout)


def attach_trainable(cfg: Config, spec: ModelSpec, model: nn.Module, strategy: Strategy,
                     ranks: np.ndarray | None) -> nn.Module:
    """LoRA adapters (one per distinct device rank for heterogeneous-rank strategies, else PEFT's
    single default adapter), or every weight trainable for full fine-tuning."""
    if strategy.uses_lora:
        hetero = strategy.supports_heterogeneous_ranks and ranks is not None
        return inject_lora(model, lora_spec(cfg), spec.head_modules, ranks=ranks.tolist() if hetero else None)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def build_device_ranks(cfg: Config, devices: DeviceProfiles) -> np.ndarray:
    """Every device's LoRA rank (``lora.device_ranks``), logged per device."""
    lo = cfg.lora
    ranks = assign_device_ranks(lo.device_ranks, cfg.num_devices, rng(cfg.seed, "ranks"), rank=lo.rank,
                                rank_set=lo.rank_set, rank_list=lo.rank_list, memory_tier=devices.memory_tier)
    values, counts = np.unique(ranks, return_counts=True)
    log.info("device ranks (%s): %s", lo.device_ranks,
             ", ".join(f"rank {v} x{c}" for v, c in zip(values.tolist(), counts.tolist())))
    for k, r in enumerate(ranks.tolist()):
        log.info("device %d rank %d (memory tier %d)", k, r, int(devices.memory_tier[k]))
    return ranks


def samples_per_round(cfg: Config, partitions: list[np.ndarray]) -> np.ndarray:
    """Samples (K,) a scheduled device trains on per round: local steps x min(batch, local data)."""
    return cfg.train.local_steps * np.minimum(cfg.train.batch_size, [len(p) for p in partitions]).astype(float)


def training_flops_per_sample(model: nn.Module, mean_tokens: float, uses_lora: bool) -> float:
    """FLOPs of one training sample: (4 with frozen weights, 6 with weight gradients) x
    non-embedding parameters x tokens (papers.md §5 calibration rule [R])."""
    n = sum(p.numel() for name, p in model.named_parameters()
            if "embeddings" not in name and "lora_" not in name and "modules_to_save" not in name)
    return (4.0 if uses_lora else 6.0) * n * mean_tokens


def build(cfg: Config) -> Setup:
    torch.set_num_threads(cfg.train.num_threads)
    spec = resolve_model(cfg.model.name)
    strategy_cls = STRATEGIES.get(cfg.strategy.name)
    strategy_cls(cfg.strategy.options)  # option errors before any loading
    tokenizer = load_tokenizer(spec)
    train, test, num_classes = build_data(cfg, tokenizer, spec)
    parts, counts = build_partitions(cfg, train.labels.numpy(), num_classes)
    model = load_base_model(cfg, spec, num_classes)
    # adapters, head copies and frozen base weights are excluded from the count: same on the plain model
    flops = training_flops_per_sample(model, float(train.lengths.float().mean()), strategy_cls.uses_lora)
    w = cfg.wireless
    cycles = w.cycles_per_sample if w.cycles_per_sample is not None else flops / w.flops_per_cycle
    devices = sample_device_profiles(rng(cfg.seed, "devices"), cfg.num_devices, cycles_per_sample=cycles,
                                     cpu_freq_ghz_min=w.cpu_freq_ghz_min, cpu_freq_ghz_max=w.cpu_freq_ghz_max,
                                     max_power_w=dbm_to_w(w.device_max_power_dbm), kappa=w.kappa)
    channel = init_channel(rng(cfg.seed, "topology"), cfg.num_devices, w.cell_radius_m, w.min_distance_m,
                           w.path_loss_const_db, w.path_loss_slope_db, w.fading)
    ranks = build_device_ranks(cfg, devices) if strategy_cls.uses_lora else None
    samples = samples_per_round(cfg, parts)
    profile = profile_model(model, float(train.lengths.float().mean()), spec.head_modules)
    context = (StrategyContext(ranks, lora_spec(cfg), cfg.seed, profile=profile, samples_per_round=samples)
               if ranks is not None else None)
    strategy = strategy_cls(cfg.strategy.options, context=context)
    model = attach_trainable(cfg, spec, model, strategy, ranks)
    device, why = resolve_device(cfg.train.device)
    log.info("training device %s (%s)", device, why)
    model = model.to(device)
    precision, why_precision = resolve_precision(cfg.model.precision, device)
    log.info("precision %s (%s)", precision, why_precision)
    state = {k: v.cpu() for k, v in trainable_state(model).items()}
    heads = (set(head_keys(state)) if strategy.uses_lora
             else {k for k in state if any(k.startswith(h + ".") for h in spec.head_modules)})
    return Setup(cfg, spec, model, strategy, state, heads, train, test, parts, counts, channel, devices, flops,
                 link_from_config(w), samples, ranks, precision)
