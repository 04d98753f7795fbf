"""Export backends: a new one is one module here plus one line in `EXPORT_BACKENDS`.

Each module turns the validated fp32 ONNX graph (and the task's calibration texts) into the model
files one runtime backend (`runtime/backends/`) loads, and checks them through that runtime:

    RUNNER: str                       # the runtime backend that loads its files
    missing() -> str | None           # why it cannot export here (a missing extra, no GPU), None when it can
    build(work, graphs) -> dict       # make its files in work.scratch, validate them; {variant: Path | Graph}
                                      #   to task-check
    publish(work, options) -> dict    # copy its files into the artifact; the manifest's `backends[NAME]` entry

`onnxruntime` and `openvino` are main backends (the profile's `backend`; the main one fills
`work.variants`, whose fp32 graph becomes `model.onnx`); `tensorrt` is added beside the main
one by `--trt` (the profile's `tensorrt:` section). Modules are imported by name, so a backend's
library is imported only when that backend is used.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from minilm_deploy.errors import InputError

EXPORT_BACKENDS: dict[str, str] = {
    "onnxruntime": "minilm_deploy.export.backends.onnxruntime",
    "openvino": "minilm_deploy.export.backends.openvino",
    "tensorrt": "minilm_deploy.export.backends.tensorrt",
}
MAIN_BACKENDS = ("onnxruntime", "openvino")  # what a profile's `backend:` may name


def export_backend(name: str) -> ModuleType:
    if name not in EXPORT_BACKENDS:
        raise InputError(f"export backend {name!r} is unknown; choose one of: {', '.join(EXPORT_BACKENDS)}")
    return importlib.import_module(EXPORT_BACKENDS[name])


def files_of(root: Path, paths: list[Path]) -> list[str]:
    """Artifact-relative names of `paths`, for a manifest entry."""
    return sorted(str(p.relative_to(root)) for p in paths)


__all__ = ["EXPORT_BACKENDS", "MAIN_BACKENDS", "export_backend", "files_of"]
