"""TensorRT backend: runs `model.plan`; `tensorrt` is imported only here, only when used.

An engine is tied to the TensorRT version and the GPU it was built on: the manifest records both
(`manifest["tensorrt"]`), and an engine from elsewhere is refused before it is deserialised.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from minilm_deploy.errors import InputError, MinilmError
from minilm_deploy.runtime.backends.base import Runner, with_sentence_embedding
from minilm_deploy.runtime.model_folder import ModelFolder


def _capability(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ".".join(str(v) for v in value)
    return str(value)


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


def engine_mismatch(built: dict[str, Any] | None, current: dict[str, Any]) -> str | None:
    """Why an engine built under `built` cannot run under `current` ({version, gpu_name, compute_capability}).

    The rule itself is `check_compatible`: one place for it, used by the exporter too.
    """
    from types import SimpleNamespace

    if not built:
        return "the manifest does not say which GPU and TensorRT version built model.plan"
    recorded = SimpleNamespace(version=str(built.get("version")), gpu_name=str(built.get("gpu_name")),
                               compute_capability=_capability(built.get("compute_capability")))
    try:
        check_compatible(recorded, trt_version=str(current.get("version")), gpu_name=str(current.get("gpu_name")),
                         compute_capability=_capability(current.get("compute_capability")))
    except MinilmError as exc:
        return str(exc)
    return None


def current_platform() -> dict[str, Any]:
    import tensorrt as trt

    gpu_name, capability = device_info()
    return {"version": trt.__version__, "gpu_name": gpu_name, "compute_capability": capability}


TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT32": "int32", "INT64": "int64",
                "BOOL": "bool", "INT8": "int8", "UINT8": "uint8"}  # trt.DataType name → torch dtype name


class EngineSession:
    """A deserialised engine and one execution context, on the TensorRT 10/11 runtime API: name-based I/O
    (`get_tensor_name`, `get_tensor_mode`, `set_input_shape`, `set_tensor_address`) and `execute_async_v3` on
    one CUDA stream, with every copy on that stream. The runtime's runner and the export's engine check both run
    engines through it (one execution path)."""

    def __init__(self, plan: bytes, label: str = "model.plan") -> None:
        import tensorrt as trt
        import torch

        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan)
        if self.engine is None:
            raise MinilmError(f"{label}: TensorRT could not deserialise the engine; rebuild it with `minilm export MODEL --trt`")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.dtypes = {n: getattr(torch, TORCH_DTYPES[self.engine.get_tensor_dtype(n).name]) for n in names}
        self.stream = torch.cuda.Stream()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One batch (its shapes inside a profile) → every output as float32 numpy."""
        import torch

        with torch.cuda.stream(self.stream):
            held = {}  # device buffers stay alive until the stream is done
            for name in self.inputs:
                held[name] = torch.from_numpy(np.ascontiguousarray(feeds[name])).to("cuda", self.dtypes[name],
                                                                                     non_blocking=False)
                self.context.set_input_shape(name, tuple(held[name].shape))
                self.context.set_tensor_address(name, held[name].data_ptr())
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                held[name] = torch.empty(shape, dtype=self.dtypes[name], device="cuda")
                self.context.set_tensor_address(name, held[name].data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise MinilmError("TensorRT execution failed; see the TensorRT log above")
            result = {n: held[n].float().cpu().numpy() for n in self.outputs}
        self.stream.synchronize()
        return result


class TrtRunner(Runner):
    name = "tensorrt"
    session: EngineSession | None = None

    @classmethod
    def unsupported(cls, source: ModelFolder, device: str) -> str | None:
        if source.engine_file is None:
            return f"{source.path}: no model.plan here (export with --trt on a machine with an NVIDIA GPU)"
        if device != "cuda":
            return "TensorRT runs on a GPU only; use --device cuda, or --backend onnxruntime on CPU"
        return None

    def activate(self) -> None:
        try:
            import tensorrt as trt
            import torch
        except ImportError:
            raise MinilmError("TensorRT is not installed; install the gpu extra (pip install 'minilm-deploy[gpu]')") from None
        if not torch.cuda.is_available():
            raise MinilmError("TensorRT needs an NVIDIA GPU and torch sees none; use --backend onnxruntime")
        here = current_platform()
        why = engine_mismatch(self.source.manifest.get("tensorrt"), here)
        if why:
            raise MinilmError(f"{self.source.engine_file}: engine refused: {why}")
        engine_file = self.source.engine_file
        assert engine_file is not None, "unsupported() refuses a source without an engine"
        self.session = EngineSession(engine_file.read_bytes(), str(engine_file))
        self.info.update(tensorrt=trt.__version__, gpu=here["gpu_name"])
        super().activate()

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.session is not None, "activate() first"
        return with_sentence_embedding(self.session.run(feeds), feeds)

    def deactivate(self) -> None:
        self.session = None
        super().deactivate()
