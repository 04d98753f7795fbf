"""Accuracy of one model on a task's evaluation split, whatever the model is.

- a task model (classification or regression head): its own predictions;
- an encoder on a single-text classification task: a nearest-centroid probe (class centroids of the
  normalised embeddings of up to `probe_train_limit` training texts);
- an encoder on a sentence-pair regression task: the cosine similarity of the two embeddings.

So the teacher (often an encoder) and its students are compared on one figure, named in the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from minilm_deploy.data.metrics import metric_name, task_metrics
from minilm_deploy.data.types import Example, TaskData
from minilm_deploy.errors import InputError
from minilm_deploy.runtime import Predictions, Predictor

BATCH = 64


def eval_examples(task: TaskData, split: str, limit: int, seed: int) -> tuple[Example, ...]:
    if split not in task.splits:
        raise InputError(f"task {task.name} has no split {split!r}; it has {', '.join(task.splits)}")
    examples = task.splits[split]
    if limit and len(examples) > limit:
        order = np.random.default_rng(seed).permutation(len(examples))[:limit]
        examples = tuple(examples[i] for i in sorted(order))
    if not examples:
        raise InputError(f"task {task.name}: split {split!r} is empty")
    return examples


def predict_all(predictor: Predictor, examples: Sequence[Example]) -> list[Predictions]:
    out = []
    for i in range(0, len(examples), BATCH):
        chunk = examples[i : i + BATCH]
        pairs = [ex.text_pair or "" for ex in chunk] if chunk[0].text_pair is not None else None
        out.append(predictor.predict([ex.text for ex in chunk], text_pairs=pairs))
    return out


def evaluate(predictor: Predictor, task: TaskData, examples: Sequence[Example], probe_train_limit: int = 2000, seed: int = 0) -> dict[str, Any] | None:
    """{"metric", "value", "metrics", "examples", "method"}; None when no method applies (said in "reason")."""
    if predictor.task == "embedding":
        return _encoder(predictor, task, examples, probe_train_limit, seed)
    if predictor.task != task.kind:
        raise InputError(f"{predictor.source.path.name} is a {predictor.task} model but task {task.name} is {task.kind}")
    batches = predict_all(predictor, examples)
    if task.kind == "regression":
        y_pred = np.concatenate([b.score_array for b in batches])
        return _result(task, np.array([_number(ex.label) for ex in examples]), y_pred, "head", len(examples))
    names, mapping = _label_map(predictor.label_names, task)
    y_pred = np.array([names[label] for b in batches for label in b.label_list])
    y_true = np.array([task.label_names.index(str(ex.label)) for ex in examples])
    return _result(task, y_true, y_pred, f"head ({mapping})", len(examples))


def _result(task: TaskData, y_true: np.ndarray, y_pred: np.ndarray, method: str, n: int) -> dict[str, Any]:
    metrics = task_metrics(task.kind, y_true, y_pred)
    name = metric_name(task.kind, task.metric)
    return {"metric": name, "value": float(metrics[name]), "metrics": {k: float(v) for k, v in metrics.items()},
            "examples": n, "method": method}


def _label_map(model_labels: Sequence[str], task: TaskData) -> tuple[dict[str, int], str]:
    """Model label → task class id: by name when the names match, else by position (LABEL_0, ...)."""
    if model_labels and set(model_labels) <= set(task.label_names):
        return {lab: task.label_names.index(lab) for lab in model_labels}, "labels by name"
    if len(model_labels) == len(task.label_names):
        return {lab: i for i, lab in enumerate(model_labels)}, "labels by position"
    raise InputError(
        f"the model's labels ({', '.join(model_labels)}) do not match task {task.name}'s ({', '.join(task.label_names)}); "
        "fine-tune it on this task"
    )


def unit_rows(e: np.ndarray) -> np.ndarray:
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def nearest_centroid(train: np.ndarray, ids: np.ndarray, classes: int, test: np.ndarray) -> np.ndarray:
    """Class of each test row: the nearest (cosine) centroid of each class's train rows; all rows unit-norm (`unit_rows`)."""
    centroids = np.stack([train[ids == k].mean(axis=0) if (ids == k).any() else np.zeros(train.shape[1]) for k in range(classes)])
    return (test @ unit_rows(centroids).T).argmax(axis=1)  # (N, H) @ (H, K) → (N,)


def _number(label: str | float | None) -> float:
    if label is None:
        raise InputError("an evaluation example has no label; accuracy needs a labelled test split")
    return float(label)


def _embed(predictor: Predictor, texts: Sequence[str]) -> np.ndarray:
    parts = [predictor.predict(list(texts[i : i + BATCH])).embedding_array for i in range(0, len(texts), BATCH)]
    return unit_rows(np.concatenate(parts))  # (N, H)


def _encoder(predictor: Predictor, task: TaskData, examples: Sequence[Example], limit: int, seed: int) -> dict[str, Any] | None:
    if task.kind == "regression" and task.is_pair:
        a = _embed(predictor, [ex.text for ex in examples])
        b = _embed(predictor, [ex.text_pair or "" for ex in examples])
        y_true = np.array([_number(ex.label) for ex in examples])
        return _result(task, y_true, (a * b).sum(axis=1), "cosine similarity", len(examples))
    if task.kind != "classification" or task.is_pair or "train" not in task.splits:
        return {"reason": f"no accuracy method for an encoder on {task.kind} task {task.name}; fine-tune it first"}
    train = eval_examples(task, "train", limit, seed)
    ids = np.array([task.label_names.index(str(ex.label)) for ex in train])
    y_pred = nearest_centroid(_embed(predictor, [ex.text for ex in train]), ids, len(task.label_names),
                              _embed(predictor, [ex.text for ex in examples]))
    y_true = np.array([task.label_names.index(str(ex.label)) for ex in examples])
    return _result(task, y_true, y_pred, f"nearest-centroid probe ({len(train)} train texts)", len(examples))
