"""What this machine's CPU can do, read once from /proc/cpuinfo: its class and whether bf16 pays.

One place for these facts: the bench environment record, the CI gate's CPU-class comparison,
`train.bf16: auto` (distillation and fine-tuning), `quantization.reduce_range: auto` and the export and
runtime backends all read them here.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

# The classes our machines come in, most capable first; a CPU is the first class whose flag it has.
# INT8 and bf16 speed differ between them, so figures are compared only within one class.
CPU_CLASSES = (("amx", "amx_int8"), ("avx512_vnni", "avx512_vnni"), ("avx_vnni", "avx_vnni"), ("avx2", "avx2"))
# The classes whose INT8 dot products accumulate in int32 (AMX tiles, VNNI's vpdpbusd): no saturation.
INT32_DOT_CLASSES = ("amx", "avx512_vnni", "avx_vnni")
# Native bf16 matrix products: AMX tiles or AVX512-BF16 (elsewhere bf16 autocast is slower than fp32).
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def _cpuinfo(field: str) -> str | None:
    """The first `field` of /proc/cpuinfo (None where there is no such file or field)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(field)), None)


@functools.cache
def cpu_flags() -> frozenset[str]:
    return frozenset((_cpuinfo("flags") or "").split())


def cpu_class(flags: frozenset[str] | None = None) -> str:
    """amx, avx512_vnni, avx_vnni, avx2, or the machine name (e.g. aarch64) for anything else."""
    flags = cpu_flags() if flags is None else flags
    return next((name for name, flag in CPU_CLASSES if flag in flags), platform.machine() or "other")


def cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or "unknown"


def cpu_vendor(name: str) -> str:
    """"amd", "intel", or the model name itself, from a CPU model name (`cpu_name()`, or one a results file recorded):
    two CPUs of one class but of two vendors (an AVX512-VNNI EPYC and Xeon) run INT8 at very different speed-ups."""
    lowered = name.lower()
    return next((vendor for vendor in ("amd", "intel") if vendor in lowered), name)


def cpu_has_fast_bf16(flags: frozenset[str] | None = None) -> bool:
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in BF16_FLAGS)


def int8_saturates(flags: frozenset[str] | None = None, machine: str | None = None) -> bool:
    """Whether INT8 matrix products can saturate on this CPU: x86 without VNNI or AMX, where ONNX Runtime and
    OpenVINO multiply u8 activations by s8 weights with vpmaddubsw, which adds pairs of products in int16
    (255·127·2 > 32767). Their workaround is 7-bit weights (ORT's reduce_range, NNCF's overflow fix).
    all-mpnet-base-v2 fine-tuned on rotten-tomatoes, 8-bit weights, on an AVX2-only EPYC: ORT dynamic INT8
    agreed with PyTorch on 48% of dev, NNCF INT8 on 55% (on an AMX Xeon ORT INT8 of the teacher fine-tuned there: 94.5%)."""
    flags = cpu_flags() if flags is None else flags
    machine = (platform.machine() if machine is None else machine).lower()
    return machine in ("x86_64", "amd64") and cpu_class(flags) not in INT32_DOT_CLASSES


def bf16_autocast(setting: bool | str, device_type: str) -> bool:
    """`bf16: auto | true | false` for a device: auto = CUDA with bf16 support, or a CPU with AMX/AVX512-BF16."""
    if setting != "auto":
        return bool(setting)
    if device_type == "cuda":
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return device_type == "cpu" and cpu_has_fast_bf16()
