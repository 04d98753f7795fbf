"""The task-level check: on a task's evaluation split, do the ONNX variants predict what PyTorch predicts?

Figures per variant: `agreement` (share of predictions equal to PyTorch's), `accuracy` (against
the labels), and the PyTorch accuracy once. Only for classification models; an embedding model
has no predictions to agree on (its output check is the cosine figures).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from minilm_deploy.data.types import Example, TaskData
from minilm_deploy.errors import InputError, ValidationFailed
from minilm_deploy.export.profile import Tolerance
from minilm_deploy.export.reference import ReferenceModel
from minilm_deploy.export.validate import Graph, torch_outputs

EVAL_SPLITS = ("dev", "validation", "test")


def eval_examples(task: TaskData, limit: int) -> tuple[str, tuple[Example, ...]]:
    for split in EVAL_SPLITS:
        if task.splits.get(split):
            return split, task.splits[split][:limit]
    raise InputError(f"task {task.name}: no dev or test split to check the export on")


def label_index(source: ReferenceModel, task: TaskData) -> dict[str, int]:
    """Map the task's label names to the model's output indices (by id2label names, else by the task's order)."""
    names = source.label_names
    if set(task.label_names) <= set(names):
        return {name: names.index(name) for name in task.label_names}
    if len(task.label_names) != len(names):
        raise InputError(f"task {task.name} has {len(task.label_names)} labels but the model has {len(names)}; export with the matching task")
    return {name: i for i, name in enumerate(task.label_names)}


def _batches(source: ReferenceModel, examples: Sequence[Example], size: int):
    for start in range(0, len(examples), size):
        chunk = examples[start : start + size]
        pairs = [ex.text_pair for ex in chunk] if chunk[0].text_pair is not None else None
        enc = source.tokenizer([ex.text for ex in chunk], pairs, truncation=True, max_length=source.max_length,
                               padding=True, return_tensors="np")
        yield {k: np.asarray(v, dtype=np.int64) for k, v in enc.items() if k in source.inputs}


def predictions(source: ReferenceModel, examples: Sequence[Example], graphs: dict[str, Path | Graph],
                batch_size: int = 32) -> dict[str, np.ndarray]:
    """argmax of the logits per example, for PyTorch ("torch") and each graph (an ONNX path, or a Graph)."""
    runs = {name: (g if isinstance(g, Graph) else Graph(Path(g))).infer_function(["logits"]) for name, g in graphs.items()}
    preds: dict[str, list[np.ndarray]] = {name: [] for name in ["torch", *runs]}
    for feeds in _batches(source, examples, batch_size):
        preds["torch"].append(torch_outputs(source, feeds)["logits"].argmax(-1))
        for name, infer in runs.items():
            preds[name].append(infer(feeds)["logits"].argmax(-1))
    return {name: np.concatenate(p) for name, p in preds.items()}


def task_check(source: ReferenceModel, task: TaskData, onnx_paths: dict[str, Path | Graph], tolerances: dict[str, Tolerance],
               *, limit: int = 2000) -> dict[str, Any]:
    """Figures for every variant in `onnx_paths` ({name: path or Graph}); ValidationFailed if one misses its gates."""
    if source.task != "classification":
        return {}
    split, examples = eval_examples(task, limit)
    mapping = label_index(source, task)
    labels = np.array([mapping.get(str(ex.label), -1) for ex in examples])
    preds = predictions(source, examples, onnx_paths)
    result: dict[str, Any] = {"task": task.name, "split": split, "examples": len(examples),
                              "accuracy_torch": float(np.mean(preds["torch"] == labels)), "variants": {}}
    failures = []
    for name in onnx_paths:
        agree, accuracy = float(np.mean(preds[name] == preds["torch"])), float(np.mean(preds[name] == labels))
        result["variants"][name] = {"agreement": agree, "accuracy": accuracy}
        tol, drop = tolerances[name], result["accuracy_torch"] - accuracy
        if tol.min_agreement is not None and agree < tol.min_agreement:
            failures.append(f"{name} agrees with PyTorch on {agree:.2%} of {task.name}/{split} (< {tol.min_agreement:.1%})")
        if tol.max_accuracy_drop is not None and drop > tol.max_accuracy_drop:
            failures.append(f"{name} accuracy {accuracy:.2%} is {drop:.2%} below PyTorch's on {task.name}/{split} (> {tol.max_accuracy_drop:.1%})")
    if failures:
        figures = {f"{n}.{k}": v for n, f in result["variants"].items() for k, v in f.items()}
        raise ValidationFailed("; ".join(failures) + "; nothing was written", figures)
    return result
