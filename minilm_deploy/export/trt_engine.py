"""TensorRT engines (`model.plan`), strongly typed, through the TensorRT 10/11 Python API.

TensorRT 11 removed weak typing: no `BuilderFlag.FP16`/`INT8`, no INT8 calibrators, no calibration
profile. Every network here is created `STRONGLY_TYPED` (TensorRT 10.x accepts the flag; 11.x
networks always are), so the engine's precision is the ONNX graph's own: an fp32 graph builds an
fp32 engine, an FP16 graph (LayerNorm and Softmax kept in fp32) an FP16 one, a Q/DQ graph an INT8
one. Those graphs are made and validated on the CPU before any engine is built (`export/backends/tensorrt.py`).
One code path for 10.x and 11.x; older versions are refused in one line. Also used: optimisation
profiles per input, `set_memory_pool_limit`, `builder_optimization_level`, a timing cache shared
across builds, `build_serialized_network`, and name-based I/O at run time (`set_input_shape`,
`set_tensor_address`, `execute_async_v3`). `tensorrt` is imported lazily; CUDA memory comes from
torch, so no pycuda is needed. An engine only runs on the GPU model and TensorRT version it was
built with: the manifest records both, and `check_compatible` refuses anything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from minilm_deploy.errors import InputError, MinilmError
from minilm_deploy.export.profile import ShapeRanges, TensorRTOptions
from minilm_deploy.paths import atomic_write_bytes, cache_root
from minilm_deploy.runtime.backends.trt_runner import device_info

Shapes = dict[str, tuple[tuple[int, int], tuple[int, int], tuple[int, int]]]


def unavailable_reason() -> str | None:
    """Why an engine cannot be built here (no tensorrt package, no CUDA GPU), or None when it can."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt package is not installed (pip install 'minilm-deploy[gpu]' on a machine with an NVIDIA GPU)"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible (TensorRT engines are built on the GPU they will run on)"
    return None


def profile_shapes(profile: ShapeRanges, inputs: Sequence[str], max_length: int) -> Shapes:
    """One optimisation profile as min/opt/max (batch, sequence) per input; the sequence may not exceed max_length."""
    b, s = profile.batch, profile.sequence
    if s.max > max_length:
        raise InputError(f"tensorrt.shape_ranges: sequence max {s.max} exceeds the model's max_length {max_length}; "
                         "lower it in a copy of the export profile (exporters/*.yaml)")
    return {name: ((b.min, s.min), (b.opt, s.opt), (b.max, s.max)) for name in inputs}


def profile_record(profile: ShapeRanges) -> dict[str, dict[str, int]]:
    return {"batch": vars(profile.batch).copy(), "sequence": vars(profile.sequence).copy()}


MIN_TENSORRT = (10, 0)  # strongly typed networks exist since 10.0


def check_version(version: str) -> None:
    """Refuse a TensorRT older than 10.0 in one line (no strongly typed networks there)."""
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < MIN_TENSORRT:
        raise MinilmError(f"TensorRT {version} is too old: engines here are strongly typed (TensorRT 10.0 or newer); "
                          "pip install 'tensorrt>=10'")


def build_engine(onnx_path: Path, plan_path: Path, options: TensorRTOptions, profiles: Sequence[ShapeRanges],
                 inputs: Sequence[str], max_length: int) -> dict[str, Any]:
    """Build and write `plan_path` from `onnx_path`, whose own types are the engine's precision;
    returns the manifest's `tensorrt` record (without validation figures)."""
    import tensorrt as trt

    check_version(trt.__version__)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise MinilmError(f"TensorRT could not parse {onnx_path.name}: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    config.builder_optimization_level = options.optimization_level
    for profile in profiles:
        opt_profile = builder.create_optimization_profile()
        for name, (lo, mid, hi) in profile_shapes(profile, inputs, max_length).items():
            opt_profile.set_shape(name, lo, mid, hi)
        config.add_optimization_profile(opt_profile)
    cache_file = Path(options.timing_cache) if options.timing_cache else cache_root() / "tensorrt" / "timing.cache"
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise MinilmError("TensorRT failed to build the engine (see the log above); try a smaller workspace or profile")
    plan_path.write_bytes(bytes(serialized))
    atomic_write_bytes(cache_file, bytes(config.get_timing_cache().serialize()))
    gpu_name, cc = device_info()
    return {"version": trt.__version__, "gpu_name": gpu_name, "compute_capability": cc, "precision": options.precision,
            "profiles": [profile_record(p) for p in profiles], "optimization_level": options.optimization_level}
