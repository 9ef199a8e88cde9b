"""Typed experiment configuration: one small pydantic model per concern.

Every model forbids unknown keys and is frozen. Every field carries a short ``description``
(shown in error messages, ``airtune validate`` and the docs). Cross-field checks are field
validators that read already-validated sibling fields (``info.data``), so they are reported
together with errors in *other* sections instead of being hidden behind them.

Loading, overrides and error formatting live in :mod:`airtune.config.load`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

_MODEL_CONFIG = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, coerce_numbers_to_str=True)


def F(default: Any, description: str, **constraints: Any) -> Any:
    """A field with its default, one-line description and constraints (``gt``, ``ge``, ...)."""
    return Field(default, description=description, **constraints)


def cross_field_error(problem: str, fix: str) -> PydanticCustomError:
    """Error for a check between sibling fields; ``{p}`` in ``fix`` becomes the section prefix."""
    return PydanticCustomError("airtune_cross_field", "{problem}", {"problem": problem, "fix": fix})


class _Section(BaseModel):
    model_config = _MODEL_CONFIG


class ModelConfig(_Section):
    """The pre-trained foundation model that is fine-tuned."""

    name: str = F("minilm-l6", "model name from the zoo, e.g. minilm-l6, or any Hugging Face model id")
    max_length: int = F(64, "maximum tokens per example; longer inputs are truncated", ge=8, le=512)
    precision: Literal["auto", "fp32", "bf16"] = F(
        "auto", "compute precision of training and evaluation: bf16 is autocast mixed precision (factors, head "
                "and optimiser stay fp32); auto takes bf16 where the hardware runs it natively (training/precision.py)")
    dropout: float | None = Field(
        None, ge=0, lt=1, examples=[0.0],
        description="hidden and attention dropout of the encoder (BERT-family names); null: the checkpoint's (0.1)")


class DataConfig(_Section):
    """Dataset and its partition across devices."""

    dataset: Literal["sst2", "qnli"] = F("sst2", "GLUE task to fine-tune on")
    dir: str | None = F(None, "directory with GLUE TSV files; null: $AIRTUNE_DATA_DIR, then Hugging Face datasets")
    partition: str = F("dirichlet", "how training examples are split across devices: a partitioner name (airtune ls)")
    dirichlet_alpha: float = F(0.5, "Dirichlet concentration of label skew; smaller is more non-IID", gt=0)
    min_partition_size: int = F(10, "minimum examples per device; the Dirichlet split is redrawn until met", ge=0)
    self_balancing: bool = F(False, "Dirichlet: a device already holding N/K examples gets no share of later classes (flwr-datasets)")
    shards_per_device: int = F(2, "label-sorted shards given to each device when partition=shards", ge=1)
    train_subset: int | None = Field(
        None, ge=1, examples=[2000], description="seeded cap on the training pool size; null: all examples"
    )
    test_subset: int | None = Field(
        None, ge=1, examples=[500], description="seeded cap on the test set size; null: all examples"
    )
    qnli_test_fraction: float = F(0.3, "share of QNLI dev held out as the test set", gt=0, lt=1)
    cache_dir: str | None = F(None, "tokenized-data cache folder; null: $AIRTUNE_CACHE_DIR, else ~/.cache/airtune/tokens")


class LoraConfig(_Section):
    """LoRA adapter shape."""

    rank: int = F(8, "LoRA rank r, the inner dimension of the A and B factors", ge=1)
    alpha: float = F(16.0, "LoRA scaling numerator; the update is scaled by alpha / rank", gt=0)
    dropout: float = F(0.0, "dropout on the LoRA input", ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["query", "value"],
        min_length=1,
        description="names of the linear layers that get adapters",
    )
    device_ranks: Literal["uniform_rank", "tier", "list", "random_set", "heavy_tail"] = F(
        "uniform_rank",
        "rank of each device: uniform_rank (all lora.rank), tier (memory tier -> rank_set), list (rank_list), "
        "random_set (uniform over rank_set), heavy_tail (Zipf over rank_set, mostly small ranks)",
    )
    rank_set: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [2, 4, 8],
        min_length=1,
        examples=[[2, 4, 8]],
        description="ranks that tier, random_set and heavy_tail draw from (sorted ascending: tier 0 gets the smallest)",
    )
    rank_list: list[Annotated[int, Field(ge=1)]] | None = Field(
        None,
        examples=[[2, 4, 8, 8]],
        validate_default=True,
        description="explicit rank of every device (one per device) when device_ranks=list; null otherwise",
    )

    @field_validator("rank_list")
    @classmethod
    def _list_iff_mode(cls, v: list[int] | None, info: ValidationInfo) -> list[int] | None:
        mode = info.data.get("device_ranks")
        if mode == "list" and v is None:
            raise cross_field_error(
                "is required when device_ranks = 'list'",
                "give one rank per device, e.g. {p}rank_list=[2,4,8,8], or choose another {p}device_ranks",
            )
        if mode is not None and mode != "list" and v is not None:
            raise cross_field_error(
                f"is only used when device_ranks = 'list' (device_ranks = '{mode}')",
                "set {p}device_ranks=list, or remove {p}rank_list",
            )
        return v


class TrainConfig(_Section):
    """Local training on each scheduled device."""

    local_steps: int = F(20, "optimizer steps per device per round", ge=1)
    batch_size: int = F(8, "examples per local step", ge=1)
    batching: Literal["random", "length_grouped"] = F(
        "length_grouped", "how a round's examples form the local batches: random, or length_grouped (the same examples "
        "sorted by length into the batches: less padding; training/engine.device_batches)")
    lr: float = F(3e-3, "learning rate of the LoRA factors", gt=0)
    lr_schedule: Literal["constant", "cosine", "linear"] = F(
        "cosine", "factor on the local learning rates over rounds: constant, cosine (1 + cos(pi t/T))/2, or "
        "linear 1 - t/T (training/schedule.py)")
    head_lr: float | None = Field(
        5e-3, ge=0, examples=[5e-3],
        description="learning rate of the classifier head; 0 freezes the head at its initialisation (FedBABU, "
        "Oh et al., ICLR 2022); null: same as lr")
    lora_b_lr_ratio: float = F(
        1.0, "LoRA+ (Hayou, Ghosh, Yu; ICML 2024): the B factors learn at this multiple of lr, the A factors at lr; "
        "1: plain LoRA", gt=0)
    weight_decay: float = F(0.0, "decoupled weight decay", ge=0)
    optimizer: Literal["adamw", "sgd"] = F("adamw", "local optimizer")
    max_grad_norm: float | None = Field(
        1.0, gt=0, examples=[1.0], description="gradient clipping norm; null: no clipping"
    )
    proximal_mu: float = F(0.0, "FedProx proximal weight mu: + mu/2 ||w - w_global||^2 in every local step; 0: off",
                           ge=0)
    loss: Literal["cross_entropy", "logit_adjusted"] = F(
        "logit_adjusted", "local loss: cross_entropy, or logit_adjusted: cross-entropy of logits + tau * log(the "
        "device's label frequencies), balanced softmax / FedLC against label skew (training/loss.py)")
    logit_adjust_tau: float = F(1.0, "logit_adjusted: weight tau of the device's log label prior (1: balanced "
                                "softmax)", ge=0)
    num_threads: int = F(2, "torch CPU threads for local training", ge=1)
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$",
                        description="torch device of training and evaluation: auto (a GPU when present), cpu, "
                                    "cuda, cuda:N or mps")
    engine: Literal["auto", "sequential", "batched"] = F(
        "auto", "how a round's devices train: sequential (one after the other), batched (compatible devices in one "
        "forward/backward pass, training/batched.py), auto (batched on a GPU, sequential on a CPU, where batching "
        "is not faster: docs/benchmarks.md)")
    batched_max_devices: int = F(16, "devices per batched pass at most (memory)", ge=1)
    skip_lost_updates: bool = F(
        True, "price the round before training and do not compute the updates the channel will lose, where the "
        "strategy's bits follow from the task (fedit, full_ft, ffa_lora, flexlora) and the engine trains in this process (not Flower); the delivered updates, "
        "accuracy, bits, time, energy and per-device rows are identical (per-update seeds; train_loss is logged "
        "for delivered updates only, either way) (experiment/runner.py)")


class WirelessConfig(_Section):
    """Single-cell wireless network: geometry, channel, interference and device compute."""

    cell_radius_m: float = F(500.0, "radius of the cell around the base station in metres", gt=0)
    min_distance_m: float = F(10.0, "minimum device distance from the base station in metres", ge=0)
    path_loss_const_db: float = F(128.1, "path loss at 1 km in dB: PL = const + slope * log10(d_km)")
    path_loss_slope_db: float = F(37.6, "path-loss slope in dB per decade; exponent = slope / 10 must exceed 2", gt=20)
    fading: str = F("rayleigh", "small-scale fading model: a fading name (airtune ls), e.g. rayleigh or none")
    noise_psd_dbm_per_hz: float = F(-174.0, "thermal noise power spectral density in dBm/Hz")
    uplink_bandwidth_hz: float = F(10e6, "total uplink bandwidth in Hz", gt=0)
    downlink_bandwidth_hz: float = F(20e6, "total downlink bandwidth in Hz", gt=0)
    device_max_power_dbm: float = F(23.0, "maximum device transmit power in dBm")
    server_power_dbm: float = F(43.0, "base-station transmit power in dBm")
    link: Literal["error_free", "fixed_rate_outage", "adaptive_outage"] = F(
        "fixed_rate_outage",
        "uplink model (wireless/link.py): error_free (Shannon rate, no loss; papers 1, 2), fixed_rate_outage "
        "(rate b log2(1+theta), lost when the realised SINR < theta; paper 3), adaptive_outage (rate from the "
        "realised SNR backed off for interference, outage probability target_outage)")
    csi: Literal["instantaneous", "statistical"] | None = Field(
        None, examples=["statistical"],
        description="what planners see before a round: the realised channel gain, or only its mean (distance); "
                    "null: instantaneous for error_free and adaptive_outage, statistical for fixed_rate_outage")
    interferer_density_per_m2: float = F(5e-7, "density of the PPP of out-of-cell interferers per square metre", ge=0)
    interferer_power_dbm: float = F(23.0, "transmit power of each interferer in dBm")
    sinr_threshold_db: float = F(0.0, "fixed_rate_outage: the SINR theta the rate is set for; below it an upload is lost")
    upload_slot_s: float | None = Field(
        None, gt=0, examples=[0.5], description="fixed_rate_outage: upload slot T in s; the rate is payload / T and "
        "the SINR threshold 2^(payload/(T b)) - 1 (paper 3: a smaller module needs a lower SINR); null: sinr_threshold_db")
    target_outage: float = F(0.1, "adaptive_outage: probability that interference makes an upload undecodable", gt=0, lt=1)
    server_flops_per_s: float = F(
        5e13, "edge-server throughput for the encoder of split learning, shared equally by the scheduled devices",
        gt=0)
    cpu_freq_ghz_min: float = F(0.5, "lowest device CPU frequency in GHz", gt=0)
    cpu_freq_ghz_max: float = F(2.0, "highest device CPU frequency in GHz, >= cpu_freq_ghz_min", gt=0)
    cycles_per_sample: float | None = Field(
        None, gt=0, examples=[1e9], description="CPU cycles per training sample; null: derived from the model FLOPs"
    )
    flops_per_cycle: float = F(16.0, "floating-point operations per CPU cycle", gt=0)
    kappa: float = F(1e-28, "effective switched capacitance of device CPUs: energy = kappa * cycles * f^2", gt=0)

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "outage" in data:
            value = data["outage"]
            hint = {"ppp": "fixed_rate_outage", "none": "error_free"}.get(str(value), "fixed_rate_outage")
            raise PydanticCustomError(
                "airtune_renamed", "wireless.outage = {value!r} was replaced by wireless.link; fix: use "
                "wireless.link={hint} (modes: error_free, fixed_rate_outage, adaptive_outage)",
                {"value": value, "hint": hint})
        return data

    @field_validator("min_distance_m")
    @classmethod
    def _inside_cell(cls, v: float, info: ValidationInfo) -> float:
        radius = info.data.get("cell_radius_m")
        if radius is not None and v >= radius:
            raise cross_field_error(
                f"must be < cell_radius_m = {radius:g}",
                "lower {p}min_distance_m or raise {p}cell_radius_m",
            )
        return v

    @field_validator("cpu_freq_ghz_max")
    @classmethod
    def _freq_order(cls, v: float, info: ValidationInfo) -> float:
        low = info.data.get("cpu_freq_ghz_min")
        if low is not None and v < low:
            raise cross_field_error(
                f"is below cpu_freq_ghz_min = {low:g}", "raise {p}cpu_freq_ghz_max or lower {p}cpu_freq_ghz_min"
            )
        return v


class AllocationConfig(_Section):
    """Radio resource allocation: who transmits, with which bandwidth and power."""

    name: str = F("class_balanced", "allocator name from the registry, see airtune ls")
    scheduler: str = F("random", "device scheduling rule: a scheduler name (airtune ls)")
    options: dict[str, Any] = Field(
        default_factory=dict, description="allocator-specific options, validated by the allocator (see airtune ls)"
    )


class ServerOptimizerConfig(_Section):
    """Server-side optimiser on the aggregated update (strategies/server_opt.py; Reddi et al. 2021)."""

    name: Literal["none", "fedavgm", "fedadam", "fedyogi"] = F(
        "none", "none (the aggregate is the new global model), fedavgm, fedadam or fedyogi")
    lr: float = F(1.0, "server learning rate eta", gt=0)
    momentum: float = F(0.9, "fedavgm: momentum beta", ge=0, lt=1)
    beta1: float = F(0.9, "fedadam/fedyogi: first-moment decay", ge=0, lt=1)
    beta2: float = F(0.99, "fedadam/fedyogi: second-moment decay", ge=0, lt=1)
    tau: float = F(1e-3, "fedadam/fedyogi: adaptivity tau (also the initial sqrt(v))", gt=0)


class StrategyConfig(_Section):
    """Federated fine-tuning method."""

    name: str = F("fedit", "strategy name from the registry, see airtune ls")
    options: dict[str, Any] = Field(
        default_factory=dict, description="strategy-specific options, validated by the strategy"
    )
    weighting: Literal["data_size", "uniform"] = F(
        "uniform", "aggregation weights of the delivered updates: data_size (each device's local data size, "
        "FedAvg) or uniform (1 each; strategies/weighting.py)")
    server_optimizer: ServerOptimizerConfig = Field(
        default_factory=ServerOptimizerConfig, description="server-side optimiser on the aggregate")


class TrackingConfig(_Section):
    """Optional mirrors of metrics.jsonl in experiment trackers (metrics/sinks.py); JSONL stays the source of truth."""

    tensorboard: bool = F(False, "also log each round's scalars to <run dir>/tensorboard (needs tensorboard)")
    mlflow: bool = F(False, "also log the config and each round's scalars to an MLflow run (needs mlflow)")
    mlflow_tracking_uri: str | None = Field(None, examples=["file:./mlruns"],
                                            description="MLflow tracking URI; null: MLflow's default")
    mlflow_experiment: str = F("airtune", "MLflow experiment name")


class Config(BaseModel):
    """A whole experiment. ``Config()`` is the default: MiniLM-L6 on SST-2, 20 devices, LoRA r=8."""

    model_config = _MODEL_CONFIG

    name: str = F("default", "experiment name, used for the run directory")
    seed: int = F(0, "master seed; every random stream is derived from it", ge=0)
    rounds: int = F(60, "number of federated rounds", ge=1)
    num_devices: int = F(20, "number of devices in the cell", ge=1)
    devices_per_round: int = F(5, "devices scheduled per round, at most num_devices", ge=1)
    eval_every: int = F(10, "evaluate every this many rounds; the last round is always evaluated", ge=1)
    model: ModelConfig = Field(default_factory=ModelConfig, description="pre-trained model")
    data: DataConfig = Field(default_factory=DataConfig, description="dataset and partition")
    lora: LoraConfig = Field(default_factory=LoraConfig, description="LoRA adapters")
    train: TrainConfig = Field(default_factory=TrainConfig, description="local training")
    wireless: WirelessConfig = Field(default_factory=WirelessConfig, description="wireless network")
    allocation: AllocationConfig = Field(default_factory=AllocationConfig, description="resource allocation")
    strategy: StrategyConfig = Field(default_factory=StrategyConfig, description="federated strategy")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="optional TensorBoard / MLflow mirrors")

    @field_validator("devices_per_round")
    @classmethod
    def _not_more_than_devices(cls, v: int, info: ValidationInfo) -> int:
        total = info.data.get("num_devices")
        if total is not None and v > total:
            raise cross_field_error(
                f"exceeds num_devices = {total}", "lower {p}devices_per_round or raise {p}num_devices"
            )
        return v

    @field_validator("lora")
    @classmethod
    def _one_rank_per_device(cls, v: LoraConfig, info: ValidationInfo) -> LoraConfig:
        total = info.data.get("num_devices")
        if total is not None and v.rank_list is not None and len(v.rank_list) != total:
            # reported at lora.rank_list (a nested location), next to errors of other sections
            err = cross_field_error(
                f"has {len(v.rank_list)} entries but num_devices = {total}",
                "give exactly one rank per device in lora.rank_list, or set num_devices="
                f"{len(v.rank_list)}",
            )
            raise ValidationError.from_exception_data(
                "LoraConfig", [InitErrorDetails(type=err, loc=("rank_list",), input=v.rank_list)]
            )
        return v
