"""One fine-tuning run (one seed): AdamW with linear warm-up and decay, dev evaluation at each
epoch end, the best epoch kept. Data is tokenized once (`Prepared`) and shared by every seed."""

from __future__ import annotations

import functools
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from minilm_deploy.data.metrics import better
from minilm_deploy.errors import MinilmError
from minilm_deploy.finetune import data as D
from minilm_deploy.finetune import interrupt
from minilm_deploy.finetune.evaluate import predict_logits, score
from minilm_deploy.finetune.losses import task_loss
from minilm_deploy.finetune.model import TaskHead, load_for_training, state_copy
from minilm_deploy.finetune.recipe import FinetuneRecipe
from minilm_deploy.hardware import bf16_autocast
from minilm_deploy.training import adamw, linear_schedule, warmup_steps


@dataclass(frozen=True)
class Prepared:
    """Everything a seed needs, checked and tokenized once."""

    head: TaskHead
    metric: str  # model selection metric on dev
    train: D.Encoded
    dev: D.Encoded
    evals: dict[str, D.Encoded]  # splits scored after training
    pad_id: int
    teacher_logits: np.ndarray | None = None  # (N_train, K) soft targets for task distillation
    info: dict[str, Any] = field(default_factory=dict)  # split sizes and how dev was made


@dataclass
class SeedRun:
    seed: int
    history: list[dict[str, Any]]
    best_epoch: int
    best_dev: float
    train_seconds: float
    splits: dict[str, dict[str, float]] = field(default_factory=dict)
    bf16: bool = False  # trained under bf16 autocast


def log(line: str) -> None:
    sys.stderr.write(f"finetune: {line.strip()}\n")
    sys.stderr.flush()


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def plan_steps(n_train: int, ft: FinetuneRecipe) -> tuple[int, int]:
    """(total optimizer steps, epochs to run) for `steps` if set, else `epochs`."""
    per_epoch = math.ceil(n_train / ft.batch_size)
    total = ft.steps if ft.steps > 0 else ft.epochs * per_epoch
    return total, math.ceil(total / per_epoch)


def make_optimizer(model: torch.nn.Module, ft: FinetuneRecipe, total: int):
    """The shared AdamW (eps 1e-8, torch's default, as fine-tuning recipes use) and linear schedule."""
    optimizer = adamw(model, lr=ft.lr, weight_decay=ft.weight_decay, eps=1e-8)
    warm = warmup_steps(ft.warmup, total)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(linear_schedule, total=total, warm=warm))


def train_step(model: torch.nn.Module, optimizer, schedule, batch: dict[str, torch.Tensor], labels: torch.Tensor,
               soft: torch.Tensor | None, kind: str, ft: FinetuneRecipe, bf16: bool = False) -> float:
    """One optimizer step on one padded batch (the forward under bf16 autocast if `bf16`); returns the loss."""
    distill = ft.distill
    device = labels.device.type
    with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        logits = model(**batch).logits  # (B, K)
    loss, _ = task_loss(kind, logits.float(), labels, soft, distill.temperature if distill else 1.0,
                        distill.weight if distill else 0.0)  # float32, outside autocast
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if ft.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), ft.max_grad_norm)
    optimizer.step()
    schedule.step()
    value = float(loss.detach())
    if not math.isfinite(value):
        raise MinilmError(f"fine-tuning diverged: the loss is {value} at step {schedule.last_epoch}; lower finetune.lr (now {ft.lr})")
    return value


def train_seed(folder: Path, prep: Prepared, ft: FinetuneRecipe, seed: int, progress=None, label: str = "") -> tuple[torch.nn.Module, SeedRun]:
    """Fine-tune the encoder in `folder` once; returns the model (best dev epoch restored) and its record."""
    generator = seed_everything(seed)
    model, _ = load_for_training(folder, prep.head)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).train()
    if ft.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    total, epochs = plan_steps(len(prep.train), ft)
    optimizer, schedule = make_optimizer(model, ft, total)
    teacher = None if prep.teacher_logits is None else torch.from_numpy(prep.teacher_logits)
    labels = torch.from_numpy(prep.train.labels)
    name = f"{label} seed {seed}".strip()
    bar = progress.add_task(name, total=total) if progress is not None else None
    bf16 = bf16_autocast(ft.bf16, device.type)
    run = SeedRun(seed, [], 0, math.nan, 0.0, bf16=bf16)
    best_state, best, step, start = None, None, 0, time.perf_counter()
    for epoch in range(1, epochs + 1):
        losses = []
        for idx, feats in D.train_batches(prep.train, ft.batch_size, generator):
            batch = {k: v.to(device) for k, v in D.collate(feats, prep.pad_id).items()}
            soft = None if teacher is None else teacher[idx].to(device)
            losses.append(train_step(model, optimizer, schedule, batch, labels[idx].to(device), soft, prep.head.kind, ft,
                                     bf16))
            step += 1
            interrupt.check()
            if bar is not None:
                progress.update(bar, advance=1, description=f"{name} epoch {epoch} loss {np.mean(losses[-50:]):.4f}")
            if step >= total:
                break
        dev = score(prep.head.kind, predict_logits(model, prep.dev, ft.eval_batch_size, prep.pad_id), prep.dev.labels)
        run.history.append({"epoch": epoch, "step": step, "train_loss": float(np.mean(losses)), "dev": dev})
        if progress is None or progress.disable:  # no live bar (not a terminal): one line per epoch
            log(f"{name} epoch {epoch}/{epochs} step {step}/{total}: train loss {np.mean(losses):.4f}, "
                f"dev {prep.metric} {dev[prep.metric]:.4f} ({time.perf_counter() - start:.0f} s)")
        if not ft.keep_best or better(prep.metric, dev[prep.metric], best):
            best, run.best_epoch, best_state = dev[prep.metric], epoch, state_copy(model) if ft.keep_best else None
    run.train_seconds = time.perf_counter() - start
    run.best_dev = float(best) if best is not None else math.nan
    if best_state is not None and run.best_epoch != len(run.history):
        model.load_state_dict(best_state)
    model.eval()
    run.splits["dev"] = run.history[run.best_epoch - 1]["dev"]
    for split, enc in prep.evals.items():
        run.splits[split] = score(prep.head.kind, predict_logits(model, enc, ft.eval_batch_size, prep.pad_id), enc.labels)
    if progress is None or progress.disable:
        log(f"{name} (best epoch {run.best_epoch}): " + "; ".join(
            f"{split} {prep.metric} {values[prep.metric]:.4f}" for split, values in run.splits.items()))
    return model, run
