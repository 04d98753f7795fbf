"""Backend registry: a new backend is one module (a `Runner` subclass) plus one line here.

Entries are import paths, so a backend's library (torch, onnxruntime, openvino, tensorrt) is imported only
when that backend is used.
"""

from __future__ import annotations

import importlib

from minilm_deploy.errors import InputError
from minilm_deploy.runtime.backends.base import Runner

BACKENDS: dict[str, str] = {
    "torch": "minilm_deploy.runtime.backends.torch_runner:TorchRunner",
    "torch-bf16": "minilm_deploy.runtime.backends.torch_runner:TorchBf16Runner",
    "onnxruntime": "minilm_deploy.runtime.backends.ort_runner:OrtRunner",
    "openvino": "minilm_deploy.runtime.backends.openvino_runner:OpenVinoRunner",
    "tensorrt": "minilm_deploy.runtime.backends.trt_runner:TrtRunner",
}


def runner_class(name: str) -> type[Runner]:
    if name not in BACKENDS:
        raise InputError(f"backend {name!r} is unknown; choose one of: auto, {', '.join(BACKENDS)}")
    module, _, attr = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


__all__ = ["BACKENDS", "Runner", "runner_class"]
