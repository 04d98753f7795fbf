"""Evaluation: logits over a split, every metric of the task kind, and `minilm eval` on a model folder."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from minilm_deploy.data.metrics import task_metrics
from minilm_deploy.data.types import TaskData
from minilm_deploy.finetune import data as D
from minilm_deploy.finetune import interrupt
from minilm_deploy.finetune.model import TaskHead, load_task_model


@torch.no_grad()
def predict_logits(model: torch.nn.Module, encoded: D.Encoded, batch_size: int, pad_id: int,
                   on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """(N, K) logits in the order of `encoded` (batches sorted by length, little padding); `on_batch(n)` after
    each batch of n examples (a progress bar)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: np.ndarray | None = None
    for idx, feats in D.eval_batches(encoded, batch_size):
        batch = {k: v.to(device) for k, v in D.collate(feats, pad_id).items()}
        logits = model(**batch).logits.float().cpu().numpy()  # (B, K)
        if out is None:
            out = np.empty((len(encoded), logits.shape[-1]), dtype=np.float32)
        out[idx] = logits
        if on_batch is not None:
            on_batch(len(idx))
        interrupt.check()
    model.train(was_training)
    assert out is not None
    return out


def predictions(kind: str, logits: np.ndarray) -> np.ndarray:
    return logits.argmax(-1) if kind == "classification" else logits[:, 0]


def score(kind: str, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Every metric of the task kind, plus the number of examples `n`."""
    return {**task_metrics(kind, labels, predictions(kind, logits)), "n": int(len(labels))}


def check_kind(task: TaskData, head: TaskHead, where: str) -> None:
    from minilm_deploy.errors import InputError

    if task.kind != head.kind:
        raise InputError(f"{where}: the model is a {head.kind} model but task {task.name} is {task.kind}; use a matching task")


def encode_split(task: TaskData, split: str, tokenizer, head: TaskHead, max_length: int, limit: int = 0) -> D.Encoded:
    """Check and tokenize one split (labels mapped through the model's label map)."""
    rows = D.sample(D.require_split(task, split), limit)
    labels = D.targets(task, split, rows, head.label2id if head.kind == "classification" else None)
    return D.encode(tokenizer, rows, labels, max_length)


def evaluate_folder(
    folder: Path, task: TaskData, splits: Sequence[str], *, max_length: int, batch_size: int = 128
) -> dict[str, dict[str, float]]:
    """{split: metrics} for a fine-tuned model folder; every split is checked before any is run."""
    model, tokenizer, head = load_task_model(folder)
    check_kind(task, head, str(folder))
    encoded = {s: encode_split(task, s, tokenizer, head, max_length) for s in splits}
    return {
        s: score(head.kind, predict_logits(model, enc, batch_size, tokenizer.pad_token_id), enc.labels)
        for s, enc in encoded.items()
    }
