"""The Triton model repository inside an artifact: `triton/<model>/config.pbtxt` + `triton/<model>/1/model.*`.

The config is written as protobuf text and checked by parsing it with Triton's own model-config
schema (`model_config.proto`, shipped in the `tritonclient` package as
`tritonclient.grpc.model_config_pb2`) and comparing it field by field with the ONNX graph.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shutil
from pathlib import Path
from typing import Any

import onnx

from minilm_deploy.errors import MinilmError

TRITON_MODEL_KINDS = {"onnx": ("onnxruntime_onnx", "model.onnx"), "plan": ("tensorrt_plan", "model.plan")}
ONNX_TO_TRITON = {onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.INT32: "TYPE_INT32",
                  onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16"}
TORCH_TO_TRITON = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16", "int64": "TYPE_INT64",
                   "int32": "TYPE_INT32", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8", "bool": "TYPE_BOOL"}


def model_name(text: str) -> str:
    """A Triton-safe model name (letters, digits, - _ .) from a folder name."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")
    return name or "minilm"


def tensor_specs(onnx_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(inputs, outputs): name, Triton data type and dims without the batch axis (-1 for dynamic)."""
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}

    def spec(value: Any) -> dict[str, Any]:
        t = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim][1:]
        return {"name": value.name, "data_type": ONNX_TO_TRITON[t.elem_type], "dims": dims}

    return [spec(v) for v in graph.input if v.name not in initializers], [spec(v) for v in graph.output]


def config_text(name: str, kind: str, inputs: list[dict], outputs: list[dict], max_batch_size: int,
                max_queue_delay_us: int, instance_count: int) -> str:
    platform, filename = TRITON_MODEL_KINDS[kind]
    lines = [f'name: "{name}"', f'platform: "{platform}"', f"max_batch_size: {max_batch_size}",
             f'default_model_filename: "{filename}"']
    for key, specs in (("input", inputs), ("output", outputs)):
        for s in specs:
            dims = ", ".join(str(d) for d in s["dims"])
            lines.append(f'{key} {{\n  name: "{s["name"]}"\n  data_type: {s["data_type"]}\n  dims: [ {dims} ]\n}}')
    lines.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {max_queue_delay_us}\n}}")
    group_kind = "KIND_GPU" if kind == "plan" else "KIND_AUTO"
    lines.append(f"instance_group [\n  {{\n    count: {instance_count}\n    kind: {group_kind}\n  }}\n]")
    return "\n".join(lines) + "\n"


def write_repository(root: Path, name: str, kind: str, model_file: Path, spec_onnx: Path, *, max_batch_size: int,
                     max_queue_delay_us: int = 100, instance_count: int = 1) -> Path:
    """Create `root/<name>/config.pbtxt` and `root/<name>/1/<model file>`; returns the model folder."""
    folder = root / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    _link_or_copy(model_file, folder / "1" / TRITON_MODEL_KINDS[kind][1])
    inputs, outputs = tensor_specs(spec_onnx)
    text = config_text(name, kind, inputs, outputs, max_batch_size, max_queue_delay_us, instance_count)
    (folder / "config.pbtxt").write_text(text, encoding="utf-8")
    return folder


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # same bytes, no second copy on disk
    except OSError:
        shutil.copyfile(src, dst)


def model_config_pb2() -> Any:
    """Triton's ModelConfig protobuf module from `tritonclient`.

    `tritonclient.grpc.model_config_pb2` imports the gRPC client package first, which needs
    `tritonclient[grpc]`; the generated module itself needs only protobuf, so without grpcio it is
    loaded from the installed file directly.
    """
    try:
        return importlib.import_module("tritonclient.grpc.model_config_pb2")
    except (ImportError, RuntimeError):
        pass
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        raise MinilmError("tritonclient is not installed; pip install 'tritonclient[grpc]' to check Triton configs")
    file = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    if not file.is_file():
        raise MinilmError("this tritonclient has no model_config_pb2; pip install 'tritonclient[grpc]>=2.40'")
    module_spec = importlib.util.spec_from_file_location("_triton_model_config_pb2", file)
    assert module_spec is not None and module_spec.loader is not None  # a .py file always has a loader
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def parse_config(path: Path) -> Any:
    """Parse a config.pbtxt with Triton's schema; an unknown field or bad value raises MinilmError."""
    from google.protobuf import text_format

    pb2 = model_config_pb2()
    try:
        return text_format.Parse(Path(path).read_text(encoding="utf-8"), pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise MinilmError(f"{path}: not a valid Triton model config ({exc})") from None


def check_repository(folder: Path, spec_onnx: Path, engine_io: dict[str, str] | None = None) -> dict[str, Any]:
    """Parse `folder/config.pbtxt` with Triton's schema and check it against the ONNX graph's tensors, and for a
    `tensorrt_plan` against the engine's own I/O (`engine_io`: tensor name → Triton data type, read from the
    deserialised engine)."""
    pb2 = model_config_pb2()
    config = parse_config(folder / "config.pbtxt")
    inputs, outputs = tensor_specs(spec_onnx)
    problems = []
    for want, got in ((inputs, config.input), (outputs, config.output)):
        seen = [(t.name, pb2.DataType.Name(t.data_type), list(t.dims)) for t in got]
        expected = [(s["name"], s["data_type"], s["dims"]) for s in want]
        if seen != expected:
            problems.append(f"tensors {seen} != graph {expected}")
    if engine_io is not None:
        engine_seen = {t.name: pb2.DataType.Name(t.data_type) for t in [*config.input, *config.output]}
        if engine_seen != engine_io:
            problems.append(f"tensors {engine_seen} != the engine's I/O {engine_io}")
    filename = config.default_model_filename
    if not (folder / "1" / filename).is_file():
        problems.append(f"1/{filename} is missing")
    if config.max_batch_size < 1 or not config.HasField("dynamic_batching"):
        problems.append("max_batch_size and dynamic_batching must be set")
    if problems:
        raise MinilmError(f"{folder / 'config.pbtxt'}: {'; '.join(problems)}")
    return {"name": config.name, "platform": config.platform, "max_batch_size": config.max_batch_size}
