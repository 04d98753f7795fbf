"""`manifest.json`: what an artifact directory holds, where it came from, and how it was validated.

Written by the exporter (`write_manifest`), read by the runtime, bench and serve (`load_manifest`).
Reading is strict: an unknown key or a wrong type is an InputError naming it; `verify_files`
checks every recorded sha256 so a truncated or edited model file is refused before it is run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from minilm_deploy.config import from_dict, to_dict
from minilm_deploy.errors import InputError
from minilm_deploy.paths import atomic_write_text

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class SourceInfo:
    path: str
    sha256: str  # of the weights file (model.safetensors or pytorch_model.bin)


@dataclass(frozen=True)
class TensorRTInfo:
    version: str
    gpu_name: str
    compute_capability: str  # "8.9"
    precision: str
    profiles: list[dict[str, dict[str, int]]]  # per profile: {"batch": {min, opt, max}, "sequence": {...}}
    optimization_level: int = 3
    validation: dict[str, Any] = field(default_factory=dict)  # engine vs ONNX Runtime figures
    io: dict[str, str] = field(default_factory=dict)  # the engine's tensors: name → Triton data type


ModelTask = Literal["embedding", "classification", "regression"]  # what a model's outputs mean
MODEL_TASKS: tuple[str, ...] = get_args(ModelTask)


@dataclass(frozen=True)
class ArtifactManifest:
    task: ModelTask
    model_file: str
    inputs: list[str]
    outputs: list[str]
    max_length: int
    precision: Literal["fp32", "int8", "fp16"]
    opset: int
    source: SourceInfo
    files: dict[str, str]  # relative path → sha256
    format_version: int = FORMAT_VERSION
    label_names: list[str] = field(default_factory=list)
    hidden_size: int = 0
    profile: dict[str, Any] = field(default_factory=dict)  # the export profile that made it
    validation: dict[str, Any] = field(default_factory=dict)
    optimization: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, Any] = field(default_factory=dict)  # every precision tried: figures and size
    versions: dict[str, str] = field(default_factory=dict)
    triton_model: str = ""
    # every export backend's files, by backend: {"onnxruntime": {"runner", "precision", "files": [...]},
    # "openvino": {..., "model_file"}, "tensorrt": {..., "graph", "engine"}} (export/backends/)
    backends: dict[str, Any] = field(default_factory=dict)
    tensorrt: TensorRTInfo | None = None
    # backend openvino: {"model_file": "openvino/model.xml", "precision", "inference_precision", nncf, versions}
    openvino: dict[str, Any] | None = None
    # --profile auto: every candidate's figures, the choice and the CPU class it was made on
    auto: dict[str, Any] | None = None
    created: str = ""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` except the manifest itself, by POSIX relative path."""
    return {p.relative_to(root).as_posix(): sha256_file(p)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST}


def write_manifest(directory: Path, manifest: ArtifactManifest) -> Path:
    target = Path(directory) / MANIFEST
    atomic_write_text(target, json.dumps(to_dict(manifest), indent=2, sort_keys=False) + "\n")
    return target


def load_manifest(path: Path | str) -> ArtifactManifest:
    """The manifest of an artifact directory (or of the manifest file itself), strictly typed."""
    path = Path(path)
    file = path / MANIFEST if path.is_dir() else path
    if not file.is_file():
        raise InputError(f"{path}: no {MANIFEST}; give an artifact directory made by `minilm export`")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{file}: not valid JSON ({exc}); re-export the artifact") from None
    if not isinstance(data, dict):
        raise InputError(f"{file}: expected a JSON object; re-export the artifact")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(f"{file}: manifest format {version!r}, this version reads {FORMAT_VERSION}; re-export the artifact")
    return from_dict(ArtifactManifest, data, source=file.name)


def verify_files(directory: Path, manifest: ArtifactManifest) -> None:
    """Every file the manifest lists exists and has its recorded sha256."""
    directory = Path(directory)
    for rel, expected in manifest.files.items():
        file = directory / rel
        if not file.is_file():
            raise InputError(f"{directory}: {rel} is missing; the artifact is incomplete: re-export it")
        if sha256_file(file) != expected:
            raise InputError(f"{directory}: {rel} does not match its sha256 in {MANIFEST} (truncated or edited); re-export it")


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {}
    for name in ("minilm-deploy", "torch", "transformers", "tokenizers", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript", "tensorrt"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return versions
