"""What the runtime needs to know about a model folder: an export artifact or a Hugging Face folder.

An export artifact (see `minilm_deploy/artifact.py`) holds `manifest.json`, `model.onnx`,
maybe `model.plan`, `tokenizer/` and `config.json`. A Hugging Face folder holds `config.json`,
weights and a tokenizer, and maybe an ONNX or OpenVINO export as optimum / optimum-intel write them
(`model.onnx`, `openvino_model.xml`): `minilm bench` then times such a peer export beside ours. Both
become one `ModelFolder`, which every backend reads.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minilm_deploy.artifact import MODEL_TASKS
from minilm_deploy.errors import InputError
from minilm_deploy.models.adapters import sequence_limit

MANIFEST_FILE = "manifest.json"
# A Hugging Face folder may also hold an export as other tools lay it out, which the ONNX Runtime and
# OpenVINO backends then run: optimum's `model.onnx`, optimum-intel's `openvino_model.xml` (+ .bin).
HF_ONNX_FILE = "model.onnx"
HF_OPENVINO_FILE = "openvino_model.xml"


@dataclass(frozen=True)
class ModelFolder:
    path: Path
    kind: str  # "artifact" | "hf"
    task: str  # "embedding" | "classification" | "regression"
    label_names: tuple[str, ...]
    max_length: int
    input_names: tuple[str, ...]  # model inputs in order (artifact) or the tokenizer's (hf)
    tokenizer_dir: Path
    precision: str = "fp32"
    model_file: Path | None = None  # model.onnx of an artifact
    engine_file: Path | None = None  # model.plan of an artifact
    openvino_file: Path | None = None  # openvino/model.xml of an artifact exported with backend openvino
    weights_dir: Path | None = None  # a Hugging Face folder the torch backend can load
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.resolve().name

    def file_size_bytes(self, backend: str) -> int:
        """Size on disk of what `backend` runs: the engine, the ONNX file (+ external data), or the weights."""
        target = {"tensorrt": self.engine_file, "onnxruntime": self.model_file,
                  "openvino": self.openvino_file or self.model_file}.get(backend)
        if target is not None:
            extra = [p for p in target.parent.glob(f"{target.name}*") if p != target]  # ONNX external data
            if target.suffix == ".xml":
                extra = [target.with_suffix(".bin")]  # an OpenVINO IR's weights
            return target.stat().st_size + sum(p.stat().st_size for p in extra)
        folder = self.weights_dir or self.path
        return sum(p.stat().st_size for p in folder.glob("*") if p.suffix in {".safetensors", ".bin"})


def inspect_model(path: Path | str) -> ModelFolder:
    """Read `path` (artifact or Hugging Face folder) into a `ModelFolder`, or explain what is wrong."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise InputError(f"{path}: no such folder; give an export artifact or a Hugging Face model folder")
    if (path / MANIFEST_FILE).is_file():
        return _from_artifact(path)
    if (path / "config.json").is_file():
        return _from_hf(path)
    raise InputError(f"{path}: neither manifest.json (export artifact) nor config.json (model folder) found here")


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest as a dict, read strictly by the exporter's reader, every listed file's sha256 checked."""
    from minilm_deploy.artifact import load_manifest, verify_files

    manifest = load_manifest(path)
    verify_files(path, manifest)
    return dataclasses.asdict(manifest)


def _from_artifact(path: Path) -> ModelFolder:
    m = read_manifest(path)
    missing = [k for k in ("task", "model_file", "inputs", "max_length") if k not in m]
    if missing:
        raise InputError(f"{path / MANIFEST_FILE}: missing {', '.join(missing)}; re-export the model")
    if m["task"] not in MODEL_TASKS:
        raise InputError(f"{path / MANIFEST_FILE}: task {m['task']!r} is not one of {', '.join(MODEL_TASKS)}")
    model_file = path / m["model_file"]
    engine = path / "model.plan"
    source_dir = Path(str((m.get("source") or {}).get("path", "")))
    weights = source_dir if str(source_dir) not in ("", ".") and (source_dir / "config.json").is_file() else None
    return ModelFolder(
        path=path, kind="artifact", task=m["task"], label_names=tuple(m.get("label_names") or ()),
        max_length=int(m["max_length"]), input_names=tuple(m["inputs"]), tokenizer_dir=path / "tokenizer",
        precision=str(m.get("precision", "fp32")), model_file=model_file if model_file.is_file() else None,
        engine_file=engine if engine.is_file() else None, weights_dir=weights, manifest=m,
        openvino_file=_openvino_file(path, m),
    )


def _from_hf(path: Path) -> ModelFolder:
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{path / 'config.json'}: not valid JSON ({exc})") from None
    task, labels = hf_task(config)
    onnx, openvino = path / HF_ONNX_FILE, path / HF_OPENVINO_FILE
    return ModelFolder(
        path=path, kind="hf", task=task, label_names=labels, max_length=sequence_limit(path, config),
        input_names=(), tokenizer_dir=path, weights_dir=path, model_file=onnx if onnx.is_file() else None,
        openvino_file=openvino if openvino.is_file() else None,
    )


def hf_task(config: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """(task, label names) of a Hugging Face config: a `*ForSequenceClassification` head or an encoder."""
    archs = config.get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        return "embedding", ()
    id2label = config.get("id2label") or {}
    labels = tuple(str(id2label[k]) for k in sorted(id2label, key=int))
    if config.get("problem_type") == "regression" or len(labels) == 1 or config.get("num_labels") == 1:
        return "regression", ()
    return "classification", labels


def _openvino_file(path: Path, manifest: dict[str, Any]) -> Path | None:
    relative = (manifest.get("openvino") or {}).get("model_file")
    return path / relative if relative and (path / relative).is_file() else None
