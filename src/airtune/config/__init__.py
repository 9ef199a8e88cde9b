"""airtune.config: typed experiment configuration (pydantic) loaded from YAML + dotted overrides.

>>> cfg = load_config("configs/default.yaml", ["rounds=3", "lora.rank=4"])  # doctest: +SKIP
"""

from airtune.config.load import config_hash, config_to_dict, dump_resolved, load_config, parse_overrides
from airtune.config.schema import (
    AllocationConfig,
    Config,
    DataConfig,
    LoraConfig,
    ModelConfig,
    StrategyConfig,
    TrainConfig,
    WirelessConfig,
)

__all__ = [
    "Config",
    "ModelConfig",
    "DataConfig",
    "LoraConfig",
    "TrainConfig",
    "WirelessConfig",
    "AllocationConfig",
    "StrategyConfig",
    "load_config",
    "parse_overrides",
    "config_to_dict",
    "dump_resolved",
    "config_hash",
]
