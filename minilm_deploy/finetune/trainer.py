"""One fine-tuning run (one seed): AdamW with linear warm-up and decay, dev evaluation at each
epoch end, the best epoch kept, checkpoints to resume from. Data is tokenized once (`Prepared`) and
shared by every seed."""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from minilm_deploy import cpu_heap
from minilm_deploy.checkpoint import (
    TrainProgress,
    load_checkpoint,
    read_extra,
    read_tensors,
    resume_point,
    save_checkpoint,
)
from minilm_deploy.data.metrics import better
from minilm_deploy.errors import MinilmError
from minilm_deploy.finetune import data as D
from minilm_deploy.finetune import interrupt
from minilm_deploy.finetune.evaluate import predict_logits, score
from minilm_deploy.finetune.hidden import HiddenAlignment, HiddenPlan
from minilm_deploy.finetune.losses import task_loss
from minilm_deploy.finetune.model import TaskHead, load_for_training, state_copy
from minilm_deploy.finetune.recipe import FinetuneRecipe
from minilm_deploy.hardware import bf16_autocast
from minilm_deploy.training import adamw, linear_schedule, training_autocast, warmup_steps


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
    labelled: np.ndarray | None = None  # (N_train,) bool: rows with a hard label (None: all; False: augmented copies)
    hidden: HiddenPlan | None = None  # hidden-state distillation (`finetune.distill.hidden`), checked
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
    """The shared AdamW (fused; eps 1e-8, torch's default, as fine-tuning recipes use) and its learning rate at each
    (0-based) step: linear warm-up, then linear decay (a function of the step alone: nothing to checkpoint)."""
    optimizer = adamw(model, lr=ft.lr, weight_decay=ft.weight_decay, eps=1e-8)
    warm = warmup_steps(ft.warmup, total)
    return optimizer, lambda step: ft.lr * linear_schedule(step, total, warm)


def train_step(model: torch.nn.Module, optimizer, lr: float, batch: dict[str, torch.Tensor], labels: torch.Tensor,
               soft: torch.Tensor | None, kind: str, ft: FinetuneRecipe, bf16: bool = False,
               labelled: torch.Tensor | None = None, hidden: HiddenAlignment | None = None) -> float:
    """One optimizer step at learning rate `lr` on one padded batch (the forward under bf16 autocast if `bf16`;
    the hard loss over the `labelled` rows only if given; with `hidden`, its part weighted by
    `finetune.distill.hidden`); returns the loss."""
    distill = ft.distill
    device = labels.device.type
    with training_autocast(model, device, bf16):
        out = model(**batch, output_hidden_states=hidden is not None)  # logits (B, K)
    loss, _ = task_loss(kind, out.logits.float(), labels, soft, distill.temperature if distill else 1.0,
                        distill.weight if distill else 0.0, labelled)  # float32, outside autocast
    if hidden is not None and distill is not None:
        loss = loss + distill.hidden * hidden.loss(out.hidden_states, hidden.teacher_states(batch, bf16), batch["attention_mask"])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if ft.max_grad_norm > 0:
        params = [*model.parameters(), *(hidden.parameters() if hidden is not None else ())]
        torch.nn.utils.clip_grad_norm_(params, ft.max_grad_norm)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    value = float(loss.detach())
    if not math.isfinite(value):
        raise MinilmError(f"fine-tuning diverged: the loss is {value} at learning rate {lr:.3g}; lower finetune.lr (now {ft.lr})")
    return value


@dataclass
class SeedState:
    """Where one seed's training stands: what its checkpoint keeps beside the weights, the optimizer, the RNG
    and the data order's generator (saved at the start of the epoch in progress)."""

    epoch: int = 1  # the epoch in progress (1-based)
    batches_done: int = 0  # of that epoch's batches
    step: int = 0  # optimizer steps done
    losses: list[float] = field(default_factory=list)  # that epoch's training losses so far
    history: list[dict[str, Any]] = field(default_factory=list)  # finished epochs
    best: float | None = None  # the best dev metric so far
    best_epoch: int = 0
    seconds: float = 0.0  # training time before this process


def train_seed(folder: Path, prep: Prepared, ft: FinetuneRecipe, seed: int, progress=None, label: str = "",
               work: Path | None = None) -> tuple[torch.nn.Module, SeedRun]:
    """Fine-tune the encoder in `folder` once; returns the model (best dev epoch restored) and its record.

    With `work`, checkpoints go to `work/step-NNNNNNN` every `ft.checkpoint_every` steps and when a termination
    is requested (SIGTERM), and training resumes from the newest intact one there, exactly where the
    uninterrupted run would be (same data order, dropout draws and learning rates)."""
    generator = seed_everything(seed)
    model, _ = load_for_training(folder, prep.head)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).train()
    if ft.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    total, epochs = plan_steps(len(prep.train), ft)
    hidden = None if prep.hidden is None else HiddenAlignment(prep.hidden, device)
    extras = {} if hidden is None else {"hidden": hidden}  # trained beside the model: checkpointed, not saved in it
    optimizer, lr_at = make_optimizer(torch.nn.ModuleDict({"model": model, **extras}) if extras else model, ft, total)
    teacher = None if prep.teacher_logits is None else torch.from_numpy(prep.teacher_logits)
    labels = torch.from_numpy(prep.train.labels)
    labelled = None if prep.labelled is None else torch.from_numpy(prep.labelled)
    name = f"{label} seed {seed}".strip()
    state, best_state = SeedState(), None
    found = resume_point(work) if work is not None else None
    if found is not None:
        load_checkpoint(found, model, optimizer, device, extras=extras)  # and torch's global RNG: the dropout draws
        state = SeedState(**read_extra(found)["seed"])
        generator.set_state(read_tensors(found, "order")["generator"])
        best_state = read_tensors(found, "best") if (found / "best.safetensors").is_file() else None
        log(f"{name}: resumed from {found} (step {state.step}/{total}, epoch {state.epoch})")
    bar = progress.add_task(name, total=total, completed=state.step) if progress is not None else None
    bf16 = bf16_autocast(ft.bf16, device.type)
    order = generator.get_state()  # the data order of the epoch in progress (set again at each epoch start)
    start = time.perf_counter()
    quiet = progress is None or progress.disable  # no live bar (not a terminal): log lines instead

    def seconds() -> float:  # training time of this seed, across resumes
        return state.seconds + time.perf_counter() - start

    def save() -> None:
        assert work is not None
        extra = {"seed": {**vars(state), "seconds": seconds()}}
        save_checkpoint(work, model, optimizer, TrainProgress(step=state.step), keep=1, extra=extra, extras=extras,
                        tensors={"order": {"generator": order}, **({"best": best_state} if best_state else {})})

    with cpu_heap.kept_heap(device.type):  # freed memory kept for the next step: no page faults refilling it
        try:
            for epoch in range(state.epoch, epochs + 1):
                order = generator.get_state()
                for index, (idx, feats) in enumerate(D.train_batches(prep.train, ft.batch_size, generator)):
                    if state.step >= total:
                        break
                    if index < state.batches_done:  # trained before the resume
                        continue
                    batch = {k: v.to(device) for k, v in D.collate(feats, prep.pad_id).items()}
                    soft = None if teacher is None else teacher[idx].to(device)
                    state.losses.append(train_step(model, optimizer, lr_at(state.step), batch, labels[idx].to(device), soft,
                                                   prep.head.kind, ft, bf16,
                                                   None if labelled is None else labelled[idx].to(device), hidden))
                    state.step += 1
                    state.batches_done += 1
                    if work is not None and ft.checkpoint_every and state.step % ft.checkpoint_every == 0:
                        save()
                        if quiet:  # a line at each checkpoint
                            log(f"{name} epoch {epoch} step {state.step}/{total}: checkpoint saved ({seconds():.0f} s)")
                    interrupt.check()
                    if bar is not None:
                        progress.update(bar, completed=state.step,
                                        description=f"{name} epoch {epoch} loss {np.mean(state.losses[-50:]):.4f}")
                dev = score(prep.head.kind, predict_logits(model, prep.dev, ft.eval_batch_size, prep.pad_id), prep.dev.labels)
                loss = float(np.mean(state.losses))
                state.history.append({"epoch": epoch, "step": state.step, "train_loss": loss, "dev": dev})
                if quiet:  # one line per epoch
                    log(f"{name} epoch {epoch}/{epochs} step {state.step}/{total}: train loss {loss:.4f}, "
                        f"dev {prep.metric} {dev[prep.metric]:.4f} ({seconds():.0f} s)")
                if not ft.keep_best or better(prep.metric, dev[prep.metric], state.best):
                    state.best, state.best_epoch, best_state = dev[prep.metric], epoch, state_copy(model) if ft.keep_best else None
                state.epoch, state.batches_done, state.losses = epoch + 1, 0, []
            run = SeedRun(seed, state.history, state.best_epoch, math.nan, seconds(), bf16=bf16)
            run.best_dev = float(state.best) if state.best is not None else math.nan
            if best_state is not None and run.best_epoch != len(run.history):
                model.load_state_dict(best_state)
            model.eval()
            run.splits["dev"] = run.history[run.best_epoch - 1]["dev"]
            for split, enc in prep.evals.items():
                run.splits[split] = score(prep.head.kind, predict_logits(model, enc, ft.eval_batch_size, prep.pad_id), enc.labels)
            if quiet:
                log(f"{name} (best epoch {run.best_epoch}): " + "; ".join(
                    f"{split} {prep.metric} {values[prep.metric]:.4f}" for split, values in run.splits.items()))
        except interrupt.SafeStop:  # between steps or evaluation batches: the state is whole
            if work is not None:
                save()
                log(f"{name}: stopped at step {state.step}/{total}; checkpoint in {work}")
            raise
    return model, run
