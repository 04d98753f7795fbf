"""Check a task against a recipe and tokenize it once: train, dev (or a held-out share of train),
the evaluation splits, and the teacher's soft targets for task distillation. Every bad input
fails here, before any training step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from minilm_deploy.data.metrics import METRICS, metric_name
from minilm_deploy.data.types import Example, TaskData
from minilm_deploy.errors import InputError
from minilm_deploy.finetune import augment as A
from minilm_deploy.finetune import data as D
from minilm_deploy.finetune.evaluate import check_kind, predict_logits
from minilm_deploy.finetune.hidden import plan_hidden
from minilm_deploy.finetune.model import TaskHead, load_task_model
from minilm_deploy.finetune.recipe import FinetuneRecipe
from minilm_deploy.finetune.trainer import Prepared
from minilm_deploy.hardware import bf16_autocast
from minilm_deploy.progress import make_progress

KINDS = tuple(METRICS)


def task_head(task: TaskData) -> TaskHead:
    if task.kind not in KINDS:
        raise InputError(f"task {task.name}: kind {task.kind!r} is not supported; use one of {', '.join(KINDS)}")
    names = D.label_names_from_train(task) if task.kind == "classification" else ()
    return TaskHead(task.kind, names)


def selection_metric(task: TaskData, ft: FinetuneRecipe) -> str:
    """The recipe's metric if given (it must fit the task kind), else the task's, else the kind's first."""
    if ft.metric:
        try:
            return metric_name(task.kind, ft.metric)
        except ValueError as exc:
            raise InputError(f"finetune.metric: {exc}") from None
    try:
        return metric_name(task.kind, task.metric)
    except ValueError:
        return next(iter(METRICS[task.kind]))


def prepare(task: TaskData, tokenizer, ft: FinetuneRecipe, teacher: Path | None = None,
            student: Path | None = None) -> Prepared:
    """Check every split the run will touch, then tokenize them (no padding: batches pad themselves). `student`:
    the folder of the model `tokenizer` belongs to (needed for hidden-state distillation)."""
    head = task_head(task)
    metric = selection_metric(task, ft)
    train_rows = D.require_split(task, "train")
    if ft.dev_split in task.splits:
        dev_rows, dev_from = D.require_split(task, ft.dev_split), f"split {ft.dev_split!r}"
    else:
        train_rows, dev_rows = D.hold_out(train_rows, ft.dev_fraction)
        dev_from = f"{ft.dev_fraction:.0%} of train held out (seed {D.SAMPLE_SEED})"
    train_rows, dev_rows = D.sample(train_rows, ft.train_limit), D.sample(dev_rows, ft.dev_limit)
    label2id = head.label2id if head.kind == "classification" else None
    missing = [s for s in ft.eval_splits if s not in task.splits]
    if missing and set(task.splits) == {"train"}:  # one file: it is the training split
        raise InputError(f"task {task.name}: one file is the training split only, and finetune.eval_splits asks for "
                         f"{', '.join(map(repr, missing))}; put train.csv and {missing[0]}.csv (or .tsv/.jsonl) in one "
                         "folder and give the folder, or skip evaluation with --set 'eval_splits=[]'")
    eval_rows = {s: D.require_split(task, s) for s in ft.eval_splits}
    labels = {
        "train": D.targets(task, "train", train_rows, label2id),
        ft.dev_split: D.targets(task, ft.dev_split, dev_rows, label2id),
        **{s: D.targets(task, s, rows, label2id) for s, rows in eval_rows.items()},
    }
    info: dict[str, Any] = {
        "task": task.name, "dev": dev_from, "train_limit": ft.train_limit, "dev_limit": ft.dev_limit,
        "sizes": {"train": len(train_rows), "dev": len(dev_rows), **{s: len(r) for s, r in eval_rows.items()}},
    }
    soft, labelled, hidden = None, None, None
    if teacher is not None:
        loaded = load_task_model(teacher)  # (model, tokenizer, head), loaded once for the copies and the targets
        if ft.distill is not None and ft.distill.hidden > 0:
            if student is None:
                raise ValueError("prepare: finetune.distill.hidden needs the student's folder")
            hidden = plan_hidden(student, teacher, tokenizer, loaded, ft.distill)
            info["hidden"] = {"pairs": [list(p) for p in hidden.pairs], "matched_by": hidden.matched_by,
                              "projection": [hidden.student_width, hidden.teacher_width]}
        copies = augmented_rows(teacher, loaded, train_rows, ft)  # () without finetune.distill.augment
        bf16 = bf16_autocast(ft.bf16, "cpu")  # the teacher runs where prepare loads it: on the CPU
        soft = teacher_logits(teacher, loaded, task, head, train_rows + copies, ft, bf16=bf16)
        info["teacher_bf16"] = bf16
        if copies:  # the copies train on soft targets only; their `labels` entries repeat their row's (unused)
            labelled = np.arange(len(train_rows) + len(copies)) < len(train_rows)
            labels["train"] = np.concatenate([labels["train"], np.repeat(labels["train"], len(copies) // len(train_rows))])
            train_rows = train_rows + copies
            info["sizes"] |= {"train_augmented": len(copies)}
    return Prepared(
        head=head, metric=metric,
        train=D.encode(tokenizer, train_rows, labels["train"], ft.max_length),
        dev=D.encode(tokenizer, dev_rows, labels[ft.dev_split], ft.max_length),
        evals={s: D.encode(tokenizer, rows, labels[s], ft.max_length) for s, rows in eval_rows.items()},
        pad_id=tokenizer.pad_token_id, teacher_logits=soft, labelled=labelled, hidden=hidden, info=info,
    )


def augmented_rows(folder: Path, loaded: tuple[Any, Any, TaskHead], rows: tuple[Example, ...],
                   ft: FinetuneRecipe) -> tuple[Example, ...]:
    """`finetune.distill.augment` word-swapped copies of each training row (see `augment`), the neighbours taken
    from the teacher's input embeddings; () when augmentation is off."""
    distill = ft.distill
    if distill is None or distill.augment == 0:
        return ()
    model, tokenizer, _ = loaded
    texts = [t for row in rows for t in (row.text, row.text_pair) if t]
    table = A.neighbour_table(tokenizer, model.get_input_embeddings().weight, texts)
    if not table:
        raise InputError(f"finetune.distill.augment: no word of the training texts is a whole word of the teacher's "
                         f"vocabulary ({folder}), so nothing can be swapped; set finetune.distill.augment to 0")
    return A.augment(rows, table, distill.augment, distill.augment_rate, seed=D.SAMPLE_SEED)


def teacher_logits(folder: Path, loaded: tuple[Any, Any, TaskHead], task: TaskData, head: TaskHead, rows,
                   ft: FinetuneRecipe, *, bf16: bool = False):
    """(N_train, K) float32 logits of the fine-tuned teacher in `folder` (`loaded`: its model, tokenizer and head)
    on the training rows, with its own tokenizer; the forward under bf16 autocast if `bf16` (`finetune.bf16`, as
    for training: several times faster where the CPU has AMX, the T=2 probabilities within about 0.01)."""
    model, tokenizer, teacher_head = loaded
    check_kind(task, teacher_head, f"distill.teacher {folder}")
    if teacher_head.label_names != head.label_names:
        raise InputError(
            f"distill.teacher {folder}: its labels {list(teacher_head.label_names)} differ from the task's "
            f"{list(head.label_names)}; fine-tune the teacher on the same task first"
        )
    encoded = D.encode(tokenizer, rows, D.targets(task, "train", rows, head.label2id if head.kind == "classification" else None), ft.max_length)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), make_progress() as progress:  # minutes on a CPU
        bar = progress.add_task(f"soft targets from {folder.name}", total=len(encoded))
        return predict_logits(model, encoded, ft.eval_batch_size, tokenizer.pad_token_id,
                              on_batch=lambda n: progress.advance(bar, n))
