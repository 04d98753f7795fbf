"""TensorRT engines (`model.plan`) from the artifact's fp32 ONNX, through the TensorRT 10 Python API.

`tensorrt` is imported lazily: nothing here needs it until an engine is built or loaded. The API
used is TensorRT 10's: explicit-batch networks (`create_network(0)`), `set_memory_pool_limit`,
`builder_optimization_level`, a timing cache shared across builds (`create_timing_cache` /
`set_timing_cache`), `build_serialized_network`, and name-based I/O at run time
(`set_input_shape`, `set_tensor_address`, `execute_async_v3`). INT8 uses an entropy calibrator fed
from the task's texts (implicit quantisation: deprecated since TensorRT 10.1 in favour of explicit
Q/DQ graphs, still supported in 10.x). CUDA memory comes from torch, so no pycuda is needed.

An engine only runs on the GPU model and TensorRT version it was built with: the manifest records
both, and `check_compatible` refuses anything else with a message that says to rebuild.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from minilm_deploy.errors import InputError, MinilmError
from minilm_deploy.export.profile import ShapeProfile, TensorRTOptions
from minilm_deploy.paths import atomic_write_bytes, cache_root

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


def profile_shapes(profile: ShapeProfile, inputs: Sequence[str], max_length: int) -> Shapes:
    """One optimisation profile as min/opt/max (batch, sequence) per input; the sequence may not exceed max_length."""
    b, s = profile.batch, profile.sequence
    if s.max > max_length:
        raise InputError(f"tensorrt profile sequence max {s.max} exceeds the model's max_length {max_length}; lower it")
    return {name: ((b.min, s.min), (b.opt, s.opt), (b.max, s.max)) for name in inputs}


def profile_record(profile: ShapeProfile) -> dict[str, dict[str, int]]:
    return {"batch": vars(profile.batch).copy(), "sequence": vars(profile.sequence).copy()}


def device_info() -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of CUDA device 0."""
    import torch

    props = torch.cuda.get_device_properties(0)
    return props.name, f"{props.major}.{props.minor}"


def check_compatible(recorded: Any, *, trt_version: str, gpu_name: str, compute_capability: str) -> None:
    """Refuse an engine built for another TensorRT version or GPU (`recorded`: the manifest's TensorRTInfo)."""
    if recorded is None:
        raise InputError("this artifact has no TensorRT engine; export it with --trt on a GPU machine")
    problems = []
    if recorded.version != trt_version:
        problems.append(f"TensorRT {recorded.version}, this machine has {trt_version}")
    if recorded.gpu_name != gpu_name or recorded.compute_capability != compute_capability:
        problems.append(f"GPU {recorded.gpu_name} (sm {recorded.compute_capability}), this machine has {gpu_name} (sm {compute_capability})")
    if problems:
        raise MinilmError(f"model.plan was built for {'; '.join(problems)}; rebuild it here with `minilm export MODEL --trt`")


def load_engine(artifact: Path, manifest: Any) -> Any:
    """Deserialize ARTIFACT/model.plan after checking it was built for this GPU and TensorRT version."""
    reason = unavailable_reason()
    if reason:
        raise MinilmError(f"cannot load model.plan: {reason}")
    import tensorrt as trt

    name, cc = device_info()
    check_compatible(manifest.tensorrt, trt_version=trt.__version__, gpu_name=name, compute_capability=cc)
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine((Path(artifact) / "model.plan").read_bytes())
    if engine is None:
        raise MinilmError("TensorRT could not deserialize model.plan; rebuild it with `minilm export MODEL --trt`")
    return engine


def make_calibrator(batches: list[dict[str, np.ndarray]], cache_file: Path) -> Any:
    """An IInt8EntropyCalibrator2 feeding `batches` (each at the calibration profile's opt shape) from CUDA memory."""
    import tensorrt as trt
    import torch

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches, self._held = iter(batches), []

        def get_batch_size(self) -> int:
            return int(next(iter(batches[0].values())).shape[0])

        def get_batch(self, names: list[str]) -> list[int] | None:
            feeds = next(self._batches, None)
            if feeds is None:
                return None
            self._held = [torch.from_numpy(feeds[n]).cuda().contiguous() for n in names]  # kept alive until the next call
            return [t.data_ptr() for t in self._held]

        def read_calibration_cache(self) -> bytes | None:
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            atomic_write_bytes(cache_file, bytes(cache))

    return Calibrator()


def build_engine(onnx_path: Path, plan_path: Path, options: TensorRTOptions, profiles: Sequence[ShapeProfile],
                 inputs: Sequence[str], max_length: int, calibration: list[dict[str, np.ndarray]] | None = None) -> dict[str, Any]:
    """Build and write `plan_path`; returns the manifest's `tensorrt` record (without validation figures)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: every network is explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise MinilmError(f"TensorRT could not parse {onnx_path.name}: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    config.builder_optimization_level = options.optimization_level
    built = []
    for profile in profiles:
        opt_profile = builder.create_optimization_profile()
        for name, (lo, mid, hi) in profile_shapes(profile, inputs, max_length).items():
            opt_profile.set_shape(name, lo, mid, hi)
        config.add_optimization_profile(opt_profile)
        built.append(opt_profile)
    if options.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # int8 engines fall back to fp16, not fp32, where int8 is not used
    if options.precision == "int8":
        if not calibration:
            raise InputError("a TensorRT INT8 engine needs calibration texts: give --task T or calibration.task")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = make_calibrator(calibration, plan_path.with_suffix(".calib"))
        config.set_calibration_profile(built[0])  # batches come padded to this profile's opt shape
    cache_file = Path(options.timing_cache) if options.timing_cache else cache_root() / "tensorrt" / "timing.cache"
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise MinilmError("TensorRT failed to build the engine (see the log above); try a smaller workspace or profile")
    plan_path.write_bytes(bytes(serialized))
    atomic_write_bytes(cache_file, bytes(config.get_timing_cache().serialize()))
    plan_path.with_suffix(".calib").unlink(missing_ok=True)
    gpu_name, cc = device_info()
    return {"version": trt.__version__, "gpu_name": gpu_name, "compute_capability": cc, "precision": options.precision,
            "profiles": [profile_record(p) for p in profiles], "optimization_level": options.optimization_level}


def run_engine(engine: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run one batch (shapes within a profile) and return every output as float32 numpy."""
    import tensorrt as trt
    import torch

    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    held = {}
    for name in names:
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            held[name] = torch.from_numpy(feeds[name]).cuda().contiguous()
            context.set_input_shape(name, tuple(held[name].shape))
    for name in names:
        if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
            dtype = torch.float16 if engine.get_tensor_dtype(name) == trt.DataType.HALF else torch.float32
            held[name] = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtype, device="cuda")
        context.set_tensor_address(name, held[name].data_ptr())
    stream = torch.cuda.current_stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise MinilmError("TensorRT execution failed")
    stream.synchronize()
    return {n: held[n].float().cpu().numpy() for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT}


def compare_outputs(ours: dict[str, np.ndarray], reference: dict[str, np.ndarray], atol: float, rtol: float) -> dict[str, Any]:
    """Polygraphy-style: per output, pass when |a - b| <= atol + rtol * |b| everywhere; max abs/rel diff reported."""
    figures = {}
    for name, ref in reference.items():
        got = ours[name]
        diff = np.abs(got - ref)
        figures[name] = {"max_abs_diff": float(diff.max()), "max_rel_diff": float((diff / np.maximum(np.abs(ref), 1e-12)).max()),
                         "passed": bool(np.all(diff <= atol + rtol * np.abs(ref)))}
    return figures
