"""From a `TaskData` to padded tensor batches: checks, label ids, tokenization, dynamic padding.

Every check here fails before any training starts, with one line naming the task, the split and
the offending row: a missing or empty split, a label the training split never had, a
non-numeric regression target.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from minilm_deploy.data.types import Example, TaskData
from minilm_deploy.errors import InputError

SAMPLE_SEED = 0  # fixed: every training seed sees the same train/dev samples


@dataclass(frozen=True)
class Encoded:
    """One tokenized split: unpadded token ids per example, and the targets."""

    features: tuple[dict[str, list[int]], ...]  # input_ids, attention_mask[, token_type_ids] per example
    labels: np.ndarray  # (N,) int64 class ids, or float32 regression targets

    def __len__(self) -> int:
        return len(self.features)


def label_key(label: object) -> str:
    """A label as the string used in label maps: 1, 1.0 and "1" are the same class."""
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label).strip()


def label_names_from_train(task: TaskData) -> tuple[str, ...]:
    """The class names, in id order: the task's own list, else the sorted labels of the train split."""
    train = require_split(task, "train")
    seen = sorted({label_key(ex.label) for ex in train if ex.label is not None})
    names = tuple(label_key(n) for n in task.label_names) or tuple(seen)
    if len(names) < 2:
        raise InputError(f"task {task.name}: the train split has {len(names)} class(es); classification needs at least 2")
    return names


def require_split(task: TaskData, split: str) -> tuple[Example, ...]:
    if split not in task.splits:
        raise InputError(f"task {task.name}: no split {split!r}; it has {', '.join(sorted(task.splits)) or 'no splits'}")
    rows = task.splits[split]
    if not rows:
        raise InputError(f"task {task.name}: split {split!r} is empty; give a split with at least one example")
    return rows


def targets(task: TaskData, split: str, rows: Sequence[Example], label2id: dict[str, int] | None) -> np.ndarray:
    """(N,) class ids (classification, via `label2id`) or float targets (regression)."""
    if task.kind == "regression":
        return np.array([_number(task.name, split, i, ex.label) for i, ex in enumerate(rows)], dtype=np.float32)
    assert label2id is not None
    ids = np.empty(len(rows), dtype=np.int64)
    for i, ex in enumerate(rows):
        key = label_key(ex.label)
        if ex.label is None or key not in label2id:
            known = ", ".join(sorted(label2id)[:20])
            raise InputError(
                f"task {task.name}: split {split!r} row {i + 1} has label {ex.label!r}, unknown to the model "
                f"(labels from training: {known}); fix the data or fine-tune on a train split with this label"
            )
        ids[i] = label2id[key]
    return ids


def _number(task: str, split: str, row: int, label: object) -> float:
    try:
        value = float(label)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or isinstance(label, bool):
        raise InputError(
            f"task {task}: regression target {label!r} in split {split!r} row {row + 1} is not a number; "
            "regression tasks need numeric labels (or declare the task as classification)"
        )
    return value


def sample(rows: tuple[Example, ...], limit: int) -> tuple[Example, ...]:
    """A fixed sample (seed 0) of `limit` rows in their original order; all rows when limit is 0."""
    if limit <= 0 or limit >= len(rows):
        return rows
    keep = np.sort(np.random.default_rng(SAMPLE_SEED).choice(len(rows), size=limit, replace=False))
    return tuple(rows[i] for i in keep)


def hold_out(rows: tuple[Example, ...], fraction: float) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    """(train, dev): a seeded random `fraction` of `rows` held out as a dev split."""
    n_dev = max(1, round(len(rows) * fraction))
    if n_dev >= len(rows):
        raise InputError(f"cannot hold out a dev split from {len(rows)} training example(s); add a dev split")
    order = np.random.default_rng(SAMPLE_SEED).permutation(len(rows))
    dev = set(order[:n_dev].tolist())
    return tuple(r for i, r in enumerate(rows) if i not in dev), tuple(rows[i] for i in sorted(dev))


def encode(tokenizer, rows: Sequence[Example], labels: np.ndarray, max_length: int, chunk: int = 2048) -> Encoded:
    """Tokenize with truncation to `max_length` and no padding (padding happens per batch)."""
    features: list[dict[str, list[int]]] = []
    pair = any(ex.text_pair is not None for ex in rows)
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        texts = [ex.text for ex in part]
        pairs = [ex.text_pair or "" for ex in part] if pair else None
        out = tokenizer(texts, text_pair=pairs, truncation=True, max_length=max_length)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in out]
        features.extend({k: out[k][i] for k in keys} for i in range(len(part)))
    return Encoded(tuple(features), labels)


def collate(features: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest example of this batch (dynamic padding), right side."""
    longest = max(len(f["input_ids"]) for f in features)
    batch: dict[str, torch.Tensor] = {}
    for key in features[0]:
        fill = pad_id if key == "input_ids" else 0
        rows = [f[key] + [fill] * (longest - len(f[key])) for f in features]
        batch[key] = torch.tensor(rows, dtype=torch.long)  # (B, T_batch)
    return batch


def train_batches(data: Encoded, batch_size: int, generator: torch.Generator) -> Iterator[tuple[np.ndarray, list]]:
    """One epoch of (indices, features) in a seeded random order; the last batch may be smaller."""
    order = torch.randperm(len(data), generator=generator).numpy()
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield idx, [data.features[i] for i in idx]


def eval_batches(data: Encoded, batch_size: int) -> Iterator[tuple[np.ndarray, list]]:
    """Batches of similar length (sorted by length: little padding); indices restore the order."""
    order = np.argsort([len(f["input_ids"]) for f in data.features], kind="stable")
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield idx, [data.features[i] for i in idx]
