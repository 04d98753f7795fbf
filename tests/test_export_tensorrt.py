"""TensorRT: everything around the engine that runs without a GPU, and the engine itself (marked gpu)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from minilm_deploy.artifact import TensorRTInfo
from minilm_deploy.errors import InputError, MinilmError
from minilm_deploy.export import build
from minilm_deploy.export import trt_engine as tensorrt
from minilm_deploy.export.profile import DimRange, ExportProfile, ShapeRanges, TensorRTOptions, load_profile
from minilm_deploy.export.validate import compare_tolerance
from minilm_deploy.export.work import Work
from minilm_deploy.runtime.backends.trt_runner import check_compatible


def test_profile_shapes_from_the_yaml():
    profile = load_profile("trt-fp16")
    first, second = (tensorrt.profile_shapes(p, ("input_ids", "attention_mask"), 256) for p in profile.trt_shape_ranges)
    assert first == {name: ((1, 1), (1, 64), (8, 256)) for name in ("input_ids", "attention_mask")}
    assert second["input_ids"] == ((8, 1), (32, 128), (64, 256))


def test_profile_longer_than_the_model_is_refused():
    with pytest.raises(InputError, match="sequence max 256 exceeds the model's max_length 128"):
        tensorrt.profile_shapes(load_profile("trt-int8").trt_shape_ranges[0], ("input_ids",), 128)


def test_profiles_derived_from_shapes_are_clamped_explicit_ones_are_not():
    derived = replace(ExportProfile(), tensorrt=TensorRTOptions())
    fitted = build.fit_trt_shape_ranges(derived, 64)
    assert fitted.trt_shape_ranges == (ShapeRanges(DimRange(1, 8, 32), DimRange(1, 64, 64)),)
    with pytest.raises(InputError, match="exceeds the model's max_length 64"):
        build.fit_trt_shape_ranges(load_profile("trt-fp16"), 64)
    assert build.fit_trt_shape_ranges(ExportProfile(), 64) == ExportProfile()


RECORDED = TensorRTInfo(version="10.13.0", gpu_name="NVIDIA L4", compute_capability="8.9", precision="fp16", profiles=[])


def test_engine_on_the_same_gpu_and_version_is_accepted():
    check_compatible(RECORDED, trt_version="10.13.0", gpu_name="NVIDIA L4", compute_capability="8.9")


@pytest.mark.parametrize("version,gpu,cc,fragment", [
    ("10.14.1", "NVIDIA L4", "8.9", "TensorRT 10.13.0, this machine has 10.14.1"),
    ("10.13.0", "NVIDIA H100 80GB HBM3", "9.0", "GPU NVIDIA L4 (sm 8.9), this machine has NVIDIA H100 80GB HBM3 (sm 9.0)"),
])
def test_engine_elsewhere_is_refused_with_rebuild_advice(version, gpu, cc, fragment):
    with pytest.raises(MinilmError, match="rebuild it here") as info:
        check_compatible(RECORDED, trt_version=version, gpu_name=gpu, compute_capability=cc)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_artifact_without_engine_is_refused():
    with pytest.raises(InputError, match="no TensorRT engine"):
        check_compatible(None, trt_version="10.13.0", gpu_name="x", compute_capability="8.9")


def test_unavailable_reason_is_one_line_here():
    reason = tensorrt.unavailable_reason()
    try:
        import tensorrt as _  # noqa: F401
        import torch

        has_engine_support = torch.cuda.is_available()
    except ImportError:
        has_engine_support = False
    assert (reason is None) == has_engine_support
    if reason:
        assert "\n" not in reason and ("tensorrt" in reason or "GPU" in reason)
        from minilm_deploy.runtime.backends.trt_runner import TrtRunner

        runner = TrtRunner.__new__(TrtRunner)  # activate() checks the install before it reads anything
        with pytest.raises(MinilmError, match="TensorRT is not installed|needs an NVIDIA GPU"):
            runner.activate()


def test_polygraphy_style_comparison():
    ref = {"logits": np.array([[1.0, -2.0], [0.5, 100.0]], dtype=np.float32)}
    close = {"logits": ref["logits"] + np.array([[0.005, -0.005], [0.0, 0.9]], dtype=np.float32)}
    figures = compare_tolerance(ref, close, atol=1e-2, rtol=1e-2)["logits"]
    assert figures["passed"] and figures["max_abs_diff"] == pytest.approx(0.9, rel=1e-5)
    far = {"logits": ref["logits"] + np.float32(0.05)}
    assert not compare_tolerance(ref, far, atol=1e-2, rtol=1e-2)["logits"]["passed"]


def _gpu_ready() -> bool:
    return tensorrt.unavailable_reason() is None


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_ready(), reason="needs CUDA and tensorrt")
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_engine_build_matches_onnxruntime(tmp_path, precision):
    from test_export_onnx import make_tiny_bert, tiny_task  # the same tiny models as the ONNX tests

    from minilm_deploy.artifact import load_manifest
    from minilm_deploy.export.reference import load_reference
    from minilm_deploy.paths import atomic_directory

    model = make_tiny_bert(tmp_path / "bert", labels=("negative", "positive"))
    profile = replace(ExportProfile(), tensorrt=TensorRTOptions(precision=precision, timing_cache=str(tmp_path / "tc")))
    profile = replace(profile, validation=replace(profile.validation, tensorrt_atol=5e-2, tensorrt_rtol=5e-2))
    source = load_reference(model)
    profile = build.fit_trt_shape_ranges(profile, source.max_length)
    out = tmp_path / "art"
    with atomic_directory(out) as root:
        build.build_artifact(Work(source, profile, root, out.name, tiny_task()), build_engine=True)
    manifest = load_manifest(out)
    assert (out / "model.plan").is_file() and (tmp_path / "tc").is_file()
    assert manifest.tensorrt.precision == precision and manifest.tensorrt.validation["batches"] >= 1
    from minilm_deploy.runtime import Predictor

    with Predictor.load(out, backend="tensorrt", device="cuda") as predictor:  # the runtime's engine path
        session = predictor.runner.session
        assert len(session.inputs) + len(session.outputs) == len(manifest.inputs) + len(manifest.outputs)
        assert set(manifest.tensorrt.io) == set(session.inputs) | set(session.outputs)
    assert (out / "triton" / manifest.triton_model / "1" / "model.plan").is_file()


class _Strict:
    """An object with only the given attributes: reading or setting any other raises AttributeError."""

    def __init__(self, **attributes):
        object.__setattr__(self, "_names", set(attributes) | {"builder_optimization_level"})
        for key, value in attributes.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, key, value):
        if key not in self._names:
            raise AttributeError(f"TensorRT 11 has no {key!r}")
        object.__setattr__(self, key, value)


def _tensorrt_11(calls: list[str]):
    """A stand-in `tensorrt` module with only names TensorRT 11's Python API keeps (TensorRT cannot be installed
    here): BuilderFlag, int8_calibrator, set_flag, set_calibration_profile and IInt8*Calibrator* are absent."""
    import types

    def record(name, result=None):
        def call(*args, **kwargs):
            calls.append(name)
            return result
        return call

    profile = _Strict(set_shape=record("set_shape"))
    cache = _Strict(serialize=lambda: b"cache")
    config = _Strict(set_memory_pool_limit=record("set_memory_pool_limit"),
                     add_optimization_profile=record("add_optimization_profile"),
                     create_timing_cache=record("create_timing_cache", cache), set_timing_cache=record("set_timing_cache"),
                     get_timing_cache=lambda: cache)
    network = _Strict()
    builder = _Strict(create_network=lambda flags: calls.append(f"create_network({flags})") or network,
                      create_builder_config=lambda: config, create_optimization_profile=lambda: profile,
                      build_serialized_network=record("build_serialized_network", b"engine"))
    parser = _Strict(parse_from_file=lambda path: True, num_errors=0, get_error=lambda i: "")
    module = types.ModuleType("tensorrt")
    module.__version__ = "11.4.0"
    module.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    module.Builder = lambda logger: builder
    module.OnnxParser = lambda net, logger: parser
    module.NetworkDefinitionCreationFlag = _Strict(STRONGLY_TYPED=1)
    module.MemoryPoolType = _Strict(WORKSPACE=0)
    return module


def test_the_builder_uses_only_tensorrt_11_names(tmp_path, monkeypatch):
    import sys

    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "tensorrt", _tensorrt_11(calls))
    monkeypatch.setattr(tensorrt, "device_info", lambda: ("stand-in GPU", "9.0"))
    (tmp_path / "model.onnx").write_bytes(b"")
    for precision in ("fp32", "fp16", "int8"):  # the precision is the graph's: the builder does the same for each
        calls.clear()
        options = TensorRTOptions(precision=precision, timing_cache=str(tmp_path / "timing.cache"))
        record = tensorrt.build_engine(tmp_path / "model.onnx", tmp_path / "model.plan", options,
                                       (ShapeRanges(DimRange(1, 1, 8), DimRange(1, 16, 32)),), ("input_ids",), 64)
        assert calls[0] == "create_network(2)"  # 1 << STRONGLY_TYPED
        assert "build_serialized_network" in calls and (tmp_path / "model.plan").read_bytes() == b"engine"
        assert record["version"] == "11.4.0" and record["precision"] == precision


def test_tensorrt_older_than_10_is_refused_in_one_line():
    tensorrt.check_version("10.0.1")
    tensorrt.check_version("11.4.0")
    with pytest.raises(MinilmError, match=r"TensorRT 8\.6\.1 is too old: engines here are strongly typed"):
        tensorrt.check_version("8.6.1")


def test_profile_shapes_past_the_position_limit_are_clamped_to_it():
    shapes = ShapeRanges(DimRange(1, 8, 32), DimRange(16, 384, 512))
    fitted = build.fit_shapes(replace(ExportProfile(), shapes=shapes), 256).shapes
    assert fitted.sequence == DimRange(16, 256, 256) and fitted.batch == shapes.batch
    assert build.fit_shapes(ExportProfile(), 512) == ExportProfile()  # within the limit: as given
