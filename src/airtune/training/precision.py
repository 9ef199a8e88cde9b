"""Which compute precision trains and evaluates (``model.precision``): ``auto``, ``fp32`` or ``bf16``.

``bf16`` is mixed precision: :func:`torch.autocast` runs the matmuls of the forward and backward
pass in bfloat16, while the LoRA factors, the head, the optimiser state and every payload stay
fp32 (autocast never changes a parameter's dtype; the payload bits are set by the strategy).

``auto`` takes bf16 only where the hardware runs it natively, fp32 elsewhere (**our choice**;
emulated bf16 is slower than fp32):

* CUDA: :func:`torch.cuda.is_bf16_supported` (compute capability 8.0 and later natively);
* x86 CPU: the ``avx512_bf16`` or ``amx_bf16`` flag of ``/proc/cpuinfo``;
* Arm CPU: the ``bf16`` feature of ``/proc/cpuinfo``;
* MPS and machines without ``/proc/cpuinfo``: fp32 (no native check through a public API).

Measured on the development machine (AVX-512-BF16, 2 threads, MiniLM-L6 + LoRA r = 8):
``docs/benchmarks.md`` "Precision": a training step is 1.86x faster in bf16, the default run
2.4x, and final and best accuracy agree with fp32 within the seed-to-seed spread on the default
config and one config per paper (3 seeds each, ``configs/sweeps/precision-*.yaml``). So
``model.precision`` defaults to ``auto`` (issue 15); ``fp32`` reproduces runs made before.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["cpu_has_native_bf16", "resolve_precision"]

_X86_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: str) -> tuple[bool, str]:
    """``(native, reason)`` from the text of ``/proc/cpuinfo`` (x86 ``flags``, Arm ``Features``)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        words = set(value.split())
        if key.strip() == "flags":
            found = [f for f in _X86_FLAGS if f in words]
            return (True, f"CPU flag {found[0]}") if found else (False, "CPU has neither avx512_bf16 nor amx_bf16")
        if key.strip() == "Features":
            return ("bf16" in words, "CPU feature bf16" if "bf16" in words else "CPU lacks the Arm bf16 feature")
    return False, "no CPU flags line in /proc/cpuinfo"


def _cpuinfo() -> str | None:
    path = Path("/proc/cpuinfo")
    try:
        return path.read_text(errors="replace") if path.exists() else None
    except OSError:
        return None


def resolve_precision(name: str, device: torch.device, cpuinfo: str | None = None) -> tuple[str, str]:
    """``(precision, reason)`` for a ``model.precision`` value on ``device``: ``"fp32"`` or ``"bf16"``.

    ``cpuinfo`` is the text of ``/proc/cpuinfo`` (read from the machine when None); explicit
    ``fp32`` and ``bf16`` are returned as given.
    """
    if name in ("fp32", "bf16"):
        return name, f"model.precision = {name}"
    if device.type == "cuda":
        ok = bool(torch.cuda.is_bf16_supported())
        return ("bf16" if ok else "fp32"), f"auto: {device} {'supports' if ok else 'lacks'} native bf16"
    if device.type == "cpu":
        text = _cpuinfo() if cpuinfo is None else cpuinfo
        if text is None:
            return "fp32", "auto: no /proc/cpuinfo to check the CPU for native bf16"
        ok, why = cpu_has_native_bf16(text)
        return ("bf16" if ok else "fp32"), f"auto: {why}"
    return "fp32", f"auto: no native-bf16 check for device type {device.type}"
