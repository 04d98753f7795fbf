"""ONNX Runtime backend: thread spinning off by default, and the providers the session really got checked."""

from __future__ import annotations

import numpy as np

from minilm_deploy.errors import MinilmError
from minilm_deploy.runtime.backends.base import Runner, with_sentence_embedding
from minilm_deploy.runtime.model_folder import ModelFolder

PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


def session_options(threads: int | None, spinning: bool = False):
    """ORT session options: `threads` intra-op threads (None: ORT's default), one inter-op thread.

    Spinning threads busy-wait for work after each run; on a small shared CPU they steal the cores
    from whatever runs next and inflate its tail latency, so they are off unless asked for.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    if threads:
        so.intra_op_num_threads = int(threads)
    flag = "1" if spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", flag)
    so.add_session_config_entry("session.inter_op.allow_spinning", flag)
    so.log_severity_level = 3
    return so


def check_providers(requested: str, got: list[str]) -> None:
    """Refuse a session that silently fell back to CPU when CUDA was asked for."""
    if requested == "cuda" and (not got or got[0] != "CUDAExecutionProvider"):
        raise MinilmError(
            f"device cuda was requested but the ONNX Runtime session got only {', '.join(got) or 'no provider'} "
            "(onnxruntime-gpu missing, or no usable CUDA): install the gpu extra or use --device cpu"
        )


class OrtRunner(Runner):
    name = "onnxruntime"
    spinning = False

    @classmethod
    def unsupported(cls, source: ModelFolder, device: str) -> str | None:
        if source.model_file is None:
            return f"{source.path}: no ONNX model here (export it first: minilm export MODEL)"
        if device not in PROVIDERS:
            return f"device {device!r} is not supported by onnxruntime; use cpu or cuda"
        return None

    def activate(self) -> None:
        import onnxruntime as ort

        if self.device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            check_providers("cuda", ["CPUExecutionProvider"])
        options = session_options(self.threads, self.spinning)
        self.session = ort.InferenceSession(str(self.source.model_file), options, providers=PROVIDERS[self.device])
        providers = self.session.get_providers()
        check_providers(self.device, providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.info.update(providers=providers, onnxruntime=ort.__version__, threads=self.threads or "default")
        super().activate()

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(None, {name: feeds[name] for name in self.input_names})
        out = dict(zip(self.output_names, values, strict=True))
        return with_sentence_embedding(out, feeds)

    def deactivate(self) -> None:
        self.session = None
        super().deactivate()
