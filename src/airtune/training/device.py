"""Which torch device trains and evaluates (``train.device``), and moving batches onto it.

``auto`` takes the first CUDA GPU when one is present, else Apple's MPS, else the CPU; explicit
``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are checked against what this machine has. The base
model, the batches, the device states while training and evaluation live on the chosen device;
the server state (aggregation maths, checkpoints) stays on the CPU (our choice: aggregation is
cheap next to training, and CPU tensors keep checkpoints and NumPy solvers device-independent).
"""

from __future__ import annotations

import re

import torch

from airtune.errors import ConfigError

__all__ = ["DEVICE_PATTERN", "resolve_device", "to_device"]

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> tuple[torch.device, str]:
    """``(device, reason)`` for a ``train.device`` value; a one-line ConfigError if it cannot be had."""
    if not DEVICE_PATTERN.match(name or ""):
        raise ConfigError(f"train.device = '{name}': not a device; fix: use auto, cpu, cuda, cuda:N or mps")
    cuda = torch.cuda.is_available()
    count = torch.cuda.device_count() if cuda else 0
    if name == "auto":
        if cuda:
            return torch.device("cuda:0"), f"auto: {count} CUDA device(s) present, using cuda:0"
        if _mps_available():
            return torch.device("mps"), "auto: no CUDA device, Apple MPS present"
        return torch.device("cpu"), "auto: no CUDA or MPS device, using the CPU"
    if name == "cpu":
        return torch.device("cpu"), "train.device = cpu"
    if name == "mps":
        if not _mps_available():
            raise ConfigError("train.device = 'mps': MPS is not available on this machine; fix: use auto or cpu")
        return torch.device("mps"), "train.device = mps"
    index = int(name.split(":")[1]) if ":" in name else 0
    if not cuda:
        raise ConfigError(f"train.device = '{name}': no CUDA device on this machine (torch {torch.__version__}); "
                          "fix: use auto or cpu")
    if index >= count:
        raise ConfigError(f"train.device = '{name}': only {count} CUDA device(s) (cuda:0..cuda:{count - 1}); "
                          "fix: choose one of them")
    return torch.device(f"cuda:{index}"), f"train.device = {name}"


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch's tensors on ``device`` (no copy when they are there already)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
