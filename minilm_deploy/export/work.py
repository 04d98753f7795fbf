"""What one export carries between its steps, and the helpers every export backend shares: the
validation of a model file against PyTorch, and the task's calibration texts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minilm_deploy.export import quantize
from minilm_deploy.export.profile import ExportProfile, Tolerance
from minilm_deploy.export.reference import ReferenceModel
from minilm_deploy.export.validate import Graph, validate_outputs


@dataclass
class Work:
    """One export in progress (everything lives under `root`, a temporary directory renamed at the end)."""

    source: ReferenceModel
    profile: ExportProfile
    root: Path  # the temporary artifact directory
    name: str  # the artifact's final folder name (names the Triton model)
    task: Any = None  # TaskData or None
    raw: Path | None = None  # the exporter's unfused fp32 graph (OpenVINO and TensorRT build from it)
    batches: list = field(default_factory=list)  # reference feeds
    references: list = field(default_factory=list)  # PyTorch's outputs on them
    variants: dict[str, Path | Graph] = field(default_factory=dict)  # precision → the main backend's model files
    record: dict[str, Any] = field(default_factory=dict)  # figures for the manifest

    @property
    def scratch(self) -> Path:
        return self.root / ".work"

    @property
    def raw_graph(self) -> Path:
        """The unfused fp32 graph (exported before any backend builds)."""
        assert self.raw is not None, "export_onnx runs before the backends"
        return self.raw


def check(work: Work, model: Path | Graph, precision: str) -> dict[str, Any]:
    """Validate `model` against PyTorch on the reference batches at `precision`'s tolerance (raises when it fails)."""
    tolerance = tolerance_for(work, precision, model)
    return validate_outputs(work.source, model, tolerance, precision=precision, batches=work.batches,
                            references=work.references)


def tolerance_for(work: Work, precision: str, model: Path | Graph) -> Tolerance:
    """The profile's gates for `model` at `precision`, as it is computed (an OpenVINO graph may run in bf16)."""
    computed_in = model.inference_precision if isinstance(model, Graph) and model.runner == "openvino" else "f32"
    return work.profile.validation.for_precision(precision, computed_in)


def calibration_texts(work: Work) -> list[str]:
    """The first `calibration.samples` texts of the task's calibration split (training texts by default)."""
    if work.task is None:
        return []
    cal = work.profile.calibration
    split = work.task.splits.get(cal.split) or next(iter(work.task.splits.values()))
    return [ex.text for ex in split[: cal.samples]]


def calibration_feeds(work: Work) -> list[dict]:
    """The calibration texts as model feeds, `calibration.batch_size` at a time, padded to the longest."""
    return list(quantize.token_batches(work.source, calibration_texts(work), work.profile.calibration.batch_size))
