"""model.precision resolution: explicit values pass through, auto takes bf16 only where native."""

from __future__ import annotations

import pytest
import torch

from airtune.training.precision import cpu_has_native_bf16, resolve_precision

SAPPHIRE = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni\n"
NEOVERSE_V1 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
NEOVERSE_N1 = "processor\t: 0\nFeatures\t: fp asimd crc32 atomics\n"


@pytest.mark.parametrize("text,native", [(SAPPHIRE, True), (SKYLAKE, False), (NEOVERSE_V1, True),
                                         (NEOVERSE_N1, False), ("", False)])
def test_cpu_flags_decide_native_bf16(text, native):
    assert cpu_has_native_bf16(text)[0] is native


def test_avx512f_alone_is_not_bf16():
    # avx512f (and avx512_vnni) emulate bf16 matmuls; only the bf16 flags count
    ok, why = cpu_has_native_bf16(SKYLAKE)
    assert not ok and "avx512_bf16" in why


@pytest.mark.parametrize("name", ["fp32", "bf16"])
def test_explicit_precision_is_kept(name):
    assert resolve_precision(name, torch.device("cpu"), cpuinfo=SKYLAKE)[0] == name


def test_auto_on_cpu_follows_the_flags():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, cpuinfo=SAPPHIRE) == ("bf16", "auto: CPU flag avx512_bf16")
    precision, why = resolve_precision("auto", cpu, cpuinfo=SKYLAKE)
    assert precision == "fp32" and why.startswith("auto: ")


def test_auto_on_other_devices_is_fp32():
    assert resolve_precision("auto", torch.device("mps"))[0] == "fp32"


def test_config_accepts_auto_and_names_the_choices_on_a_typo():
    from airtune.config import Config

    assert Config.model_validate({"model": {"precision": "auto"}}).model.precision == "auto"
    with pytest.raises(Exception, match="precision"):
        Config.model_validate({"model": {"precision": "bf8"}})
