"""OpenVINO backend: the artifact's OpenVINO IR (exported with `backend: openvino`) or its ONNX graph,
compiled by OpenVINO for the CPU.

OpenVINO reads `model.onnx` as it is (standard ops), with dynamic batch and sequence. Its
inference precision is a hint: `bf16` pays on CPUs with AMX or AVX512-BF16 (where `auto` picks
it), `f32` elsewhere; an IR's manifest records the export's setting, applied at load on this CPU.
`threads` sets `INFERENCE_NUM_THREADS`; the latency hint keeps one stream.
Needs the `openvino` extra (`pip install -e ".[openvino]"`), imported only when this backend runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from minilm_deploy.errors import InputError
from minilm_deploy.hardware import cpu_has_fast_bf16
from minilm_deploy.runtime.backends.base import Runner, with_sentence_embedding
from minilm_deploy.runtime.model_folder import ModelFolder

PRECISIONS = ("auto", "f32", "bf16")


def inference_precision(setting: str = "auto") -> str:
    """The `INFERENCE_PRECISION_HINT` for a setting: auto = bf16 where the CPU runs it natively, else f32."""
    if setting not in PRECISIONS:
        raise ValueError(f"OpenVINO inference precision {setting!r}: choose one of {', '.join(PRECISIONS)}")
    if setting == "auto":
        return "bf16" if cpu_has_fast_bf16() else "f32"
    return setting


def openvino_missing() -> str | None:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return 'OpenVINO is not installed; install the extra: pip install -e ".[openvino]"'
    return None


def read_model(core, path):
    """The ONNX graph as an OpenVINO model, or a one-line error naming the ops OpenVINO cannot read
    (ONNX Runtime's fused contrib ops, e.g. com.microsoft.QAttention in an ORT-fused INT8 graph)."""
    try:
        return core.read_model(str(path))
    except RuntimeError as exc:
        ops = re.search(r"No conversion rule found for operations: ([^\n]+)", str(exc))
        if ops is None:
            raise
        raise InputError(
            f"{path}: OpenVINO cannot read {ops.group(1).strip()} (ONNX Runtime's own fused ops); run this artifact "
            "with --backend onnxruntime, or give OpenVINO a standard-ops graph (an fp32 export, or an unfused one: "
            "optimize: false in the export profile)"
        ) from None


def compile_file(path: Path, hint: str, threads: int | None = None):
    """An IR or ONNX file compiled for the CPU (latency hint, `hint` = f32 | bf16, `threads` intra-op threads),
    denormals flushed to zero in bf16: a fine-tuned all-mpnet-base-v2 6×768 copy in bf16 on AMX ran 9% faster with it (24.2
    against 26.7 ms at b1×128, 1 thread), as fast as the pretrained copy, whose speed it did not change. Export
    validation and the task check compile through here too, so the gates judge what is served."""
    from minilm_deploy.runtime.backends.openvino_core import openvino_core

    # Flushing denormals only in bf16, where it was measured: in f32 on an AVX2-only AMD EPYC (OpenVINO 2026.4.1) it
    # broke inference of every BERT graph ("Broadcast node ... Value -1 not in range" at the attention mask's Expand).
    config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint,
                                 "CPU_DENORMALS_OPTIMIZATION": hint == "bf16"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    core = openvino_core()  # one for the process: a Core per model can break Ctrl-C (see openvino_core.py)
    return core.compile_model(read_model(core, path), "CPU", config)


class OpenVinoInfer:
    """feeds → float32 outputs by name through OpenVINO: what the runner, export validation and the task check run."""

    def __init__(self, path: Path, hint: str, threads: int | None = None) -> None:
        self.compiled = compile_file(path, hint, threads)
        self._request = self.compiled.create_infer_request()
        self._inputs = [port.get_any_name() for port in self.compiled.inputs]
        self._outputs = [(port.get_any_name(), port) for port in self.compiled.outputs]

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self._request.infer({name: feeds[name] for name in self._inputs})
        return {name: np.asarray(result[port], dtype=np.float32) for name, port in self._outputs}


class OpenVinoRunner(Runner):
    name = "openvino"
    precision = "auto"  # the inference precision hint (see `inference_precision`)
    _infer: OpenVinoInfer | None = None

    @classmethod
    def unsupported(cls, source: ModelFolder, device: str) -> str | None:
        if source.model_file is None and source.openvino_file is None:
            return f"{source.path}: no ONNX model here (export it first: minilm export MODEL)"
        if device != "cpu":
            return f"device {device!r}: the openvino backend runs on the CPU here; use --device cpu"
        return openvino_missing()

    def activate(self) -> None:
        import openvino as ov

        exported = self.source.manifest.get("openvino") or {}
        hint = inference_precision(exported.get("inference_precision", self.precision))
        model_file = self.source.openvino_file or self.source.model_file
        assert model_file is not None, "unsupported() refuses a source without a model file"
        self._infer = OpenVinoInfer(model_file, hint, self.threads)
        self.info.update(openvino=ov.__version__, threads=self.threads or "default", inference_precision=hint,
                         model_file=str(model_file.relative_to(self.source.path)),
                         precision=exported.get("precision", self.source.precision),
                         execution_devices=list(self._infer.compiled.get_property("EXECUTION_DEVICES")))
        super().activate()

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self._infer is not None, "activate() first"
        out = self._infer(feeds)
        return with_sentence_embedding(out, feeds)

    def deactivate(self) -> None:
        self._infer = None
        super().deactivate()
