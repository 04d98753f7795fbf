"""The distillation loop: teacher states → student states → relation KL → AdamW, resumable.

One optimizer step consumes `train.batch_size` sequences of the global order (see `data.BlockOrder`),
split into `grad_accum` micro-batches and, under torchrun, across processes; the loss of every
piece is normalised by the real-token count of the whole global batch, so the result does not
depend on how the batch was split. Dropout is seeded from (seed, step, rank), which makes a
resumed run follow the uninterrupted one exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import Progress, TextColumn
from torch import nn

from minilm_deploy import cpu_heap
from minilm_deploy.checkpoint import (
    TrainProgress,
    latest_checkpoint,
    load_checkpoint,
    resume_point,
    save_checkpoint,
)
from minilm_deploy.distill import distributed as D
from minilm_deploy.distill.capture import CaptureModel, capture_teacher
from minilm_deploy.distill.data import BlockOrder, Blocks, batch_slice
from minilm_deploy.distill.objective import Counts, MiniLMObjective, make_projection
from minilm_deploy.distill.recipe import LossSpec, TrainSpec
from minilm_deploy.errors import InputError, MinilmError
from minilm_deploy.hardware import bf16_autocast
from minilm_deploy.models.adapters import attention_shape, layer_list, resolve_layer
from minilm_deploy.progress import make_progress, progress_enabled
from minilm_deploy.training import adamw, linear_schedule, training_autocast

METRICS_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"


@dataclass
class TrainingJob:
    """Everything one distillation run needs (one stage of teacher → [assistant] → student)."""

    teacher: nn.Module
    student: nn.Module
    loss: LossSpec
    train: TrainSpec
    blocks: Blocks
    seed: int
    workdir: Path  # checkpoints/ and metrics.jsonl
    label: str = "distill"
    # a width-pruned student: the teacher channel each of its channels came from (the projection's starting map)
    pruned_channels: list[int] | None = None


def lr_at(step: int, spec: TrainSpec) -> float:
    """Linear warm-up to `lr`, then linear decay to 0 at the last step (the schedule fine-tuning uses too)."""
    return spec.lr * linear_schedule(step, spec.total_steps(), spec.warmup_steps())


def use_bf16(spec: TrainSpec, device: torch.device) -> bool:
    """`train.bf16` on this device: auto = CUDA with bf16, or a CPU with AMX/AVX512-BF16 (slower elsewhere)."""
    return bf16_autocast(spec.bf16, device.type)


def make_optimizer(model: nn.Module, spec: TrainSpec) -> torch.optim.AdamW:
    """The shared AdamW (fused) with BERT pre-training's eps 1e-6."""
    return adamw(model, lr=spec.lr, weight_decay=spec.weight_decay, eps=1e-6)


def freeze_unreached(student: CaptureModel, teacher: CaptureModel, objective: MiniLMObjective, blocks: Blocks) -> list[str]:
    """Turn off gradients of student parameters the loss cannot reach (layers past the captured
    projections, the pooler); DDP and AdamW then see only what trains. Returns their names."""
    ids, mask = batch_slice(blocks, torch.arange(min(2, len(blocks))))
    device = next(student.model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    out = objective(capture_teacher(teacher, ids, mask), student(ids, mask))
    out.total.backward()
    frozen = [n for n, p in student.model.named_parameters() if p.requires_grad and p.grad is None]
    for name, param in student.model.named_parameters():
        if name in frozen:
            param.requires_grad_(False)
    for param in student.parameters():  # the projection's too
        param.grad = None
    return frozen


def _seed_for(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + rank) % (2**63 - 1)


class MetricsLog:
    """JSON lines, one per logged step; on resume, lines past the checkpoint are dropped."""

    def __init__(self, path: Path, keep_until: int, enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        if enabled and path.exists():
            kept = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln and json.loads(ln)["step"] <= keep_until]
            path.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")


def check_stage(stage: TrainingJob, world: int = 1) -> None:
    """Refuse a bad stage (heads, layer numbers, batch split) before anything is written."""
    micro = stage.train.batch_size // stage.train.grad_accum
    if micro % world:
        raise InputError(f"distill.train.batch_size/grad_accum = {micro} must be divisible by the {world} processes")
    objective = MiniLMObjective(stage.loss, _heads(stage.teacher), _heads(stage.student))
    CaptureModel(stage.teacher, stage.loss.teacher_layer, objective.captured_parts(), what="distill.loss.teacher_layer")
    CaptureModel(stage.student, stage.loss.student_layer, objective.captured_parts(), what="distill.loss.student_layer")
    check_student_layer(stage.loss.student_layer, len(layer_list(stage.student)))


def check_student_layer(student_layer: int, layers: int) -> None:
    """Refuse a loss on a student layer below the last: the layers above it would get no gradient and
    be saved (and fine-tuned) at their initial values."""
    index = resolve_layer(student_layer, layers, what="distill.loss.student_layer")
    if index < layers - 1:
        raise InputError(
            f"distill.loss.student_layer={student_layer} leaves the student's layers {index + 2}..{layers} untrained "
            f"(no loss reaches them; they would ship at their initial values): set distill.student.layers={index + 1} "
            "for a student that ends at that layer, or distill.loss.student_layer=-1"
        )


def train_stage(stage: TrainingJob, info: D.DistInfo, device: torch.device, *, resume: bool) -> TrainProgress:
    """Run (or continue) one stage; returns the final progress with the last metrics."""
    spec = stage.train
    check_stage(stage, info.world)
    per_rank = spec.batch_size // spec.grad_accum // info.world
    if spec.total_steps() == 0:
        return TrainProgress()  # the initialised student, as it is (a baseline, or point 0 of a budget curve)
    objective = MiniLMObjective(stage.loss, _heads(stage.teacher), _heads(stage.student))
    parts = objective.captured_parts()
    torch.manual_seed(stage.seed)
    projection = make_projection(objective, _width(stage.student), _width(stage.teacher), stage.pruned_channels)
    teacher = CaptureModel(stage.teacher.to(device), stage.loss.teacher_layer, parts,
                           want_bias=objective.use_bias, what="distill.loss.teacher_layer")
    student = CaptureModel(stage.student.to(device), stage.loss.student_layer, parts,
                           want_bias=objective.use_bias, what="distill.loss.student_layer",
                           projection=projection.to(device) if projection is not None else None)
    student.model.train()
    freeze_unreached(student, teacher, objective, stage.blocks)
    optimizer = make_optimizer(student, spec)  # the student and its projection
    ckpt_root = stage.workdir / CHECKPOINTS
    progress = TrainProgress()
    found = resume_point(ckpt_root) if resume else None
    if found is not None:
        progress = load_checkpoint(found, student.model, optimizer, device, extras=_extras(student))
    module: nn.Module = student
    if info.active:
        from torch.nn.parallel import DistributedDataParallel

        module = DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda" else None)
    log = MetricsLog(stage.workdir / METRICS_FILE, progress.step, info.is_main)
    loop = _Loop(stage, info, device, objective, teacher, module, optimizer, per_rank, log)
    return loop.run(progress)


def _heads(model: nn.Module) -> int:
    return attention_shape(model.config)[2]


def _width(model: nn.Module) -> int:
    return attention_shape(model.config)[1]


def _extras(student: CaptureModel) -> dict[str, nn.Module]:
    """What a checkpoint keeps beside the student's own weights: its projection, if it has one."""
    return {"projection": student.projection} if student.projection is not None else {}


class _Loop:
    def __init__(self, stage, info, device, objective, teacher, module, optimizer, per_rank, log) -> None:
        self.stage, self.info, self.device = stage, info, device
        self.objective, self.teacher, self.module = objective, teacher, module
        self.optimizer, self.per_rank, self.log = optimizer, per_rank, log
        self.spec: TrainSpec = stage.train
        self.order = BlockOrder(len(stage.blocks), stage.seed)
        self.bf16 = use_bf16(self.spec, device)
        self.params = [p for p in module.parameters() if p.requires_grad]

    def run(self, progress: TrainProgress) -> TrainProgress:
        total = self.spec.total_steps()
        bar = make_progress(TextColumn("{task.fields[info]}")) if self.info.is_main else Progress(disable=True)
        task = bar.add_task(self.stage.label, total=total, completed=progress.step, info="")
        window = (time.perf_counter(), progress.tokens)
        with bar, cpu_heap.kept_heap(self.device.type):
            while progress.step < total:
                parts, grad_norm = self._step(progress)
                if (progress.step % self.spec.log_every == 0) or progress.step == total:
                    window = self._report(progress, parts, grad_norm, window, bar, task)
                bar.update(task, completed=progress.step)
                if self.info.is_main and (progress.step % self.spec.checkpoint_every == 0 or progress.step == total):
                    self._save(progress)
                D.barrier(self.info)
        return progress

    @property
    def _capture(self) -> CaptureModel:
        """The student's capture module (unwrapped from DistributedDataParallel)."""
        return self.module.module if hasattr(self.module, "module") else self.module

    @property
    def student(self) -> nn.Module:
        return self._capture.model

    def _save(self, progress: TrainProgress) -> None:
        save_checkpoint(self.stage.workdir / CHECKPOINTS, self.student, self.optimizer, progress,
                        self.spec.keep_checkpoints, extras=_extras(self._capture))

    def _step(self, progress: TrainProgress) -> tuple[dict[str, float], float]:
        spec, info = self.spec, self.info
        lr = lr_at(progress.step, spec)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(_seed_for(self.stage.seed, progress.step, info.rank))
        index = self.order.indices(progress.samples, progress.samples + spec.batch_size)  # the global batch
        real_tokens = int(self.stage.blocks.attention_mask[index].sum())
        counts = Counts(tokens=real_tokens / info.world, sequences=spec.batch_size / info.world)  # DDP averages over ranks
        micro = spec.batch_size // spec.grad_accum
        sums = torch.zeros(len(self.objective.parts) + 1, device=self.device)
        for m in range(spec.grad_accum):
            start = m * micro + info.rank * self.per_rank
            ids, mask = batch_slice(self.stage.blocks, index[start : start + self.per_rank])
            ids, mask = ids.to(self.device), mask.to(self.device)
            sync = contextlib.nullcontext() if m == spec.grad_accum - 1 or not info.active else self.module.no_sync()
            with sync:
                with training_autocast(self.student, self.device.type, self.bf16):
                    t_states = capture_teacher(self.teacher, ids, mask)
                    s_states = self.module(ids, mask)
                    out = self.objective(t_states, s_states, counts)  # float32 inside, autocast or not
                out.total.backward()  # outside autocast, as torch recommends
            sums += torch.stack([out.total.detach(), *out.parts.values()]).float()
        sums = D.all_reduce_sum(sums, info) / info.world
        values = dict(zip(["loss", *self.objective.parts], sums.tolist(), strict=True))
        grad_norm = self._clip()
        if not all(math.isfinite(v) for v in [*values.values(), grad_norm]):
            self._fail(progress, values, grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        progress.step += 1
        progress.samples += spec.batch_size
        progress.tokens += real_tokens
        return values, grad_norm

    def _clip(self) -> float:
        max_norm = self.spec.max_grad_norm if self.spec.max_grad_norm > 0 else float("inf")
        return float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))

    def _fail(self, progress: TrainProgress, values: dict[str, float], grad_norm: float) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        found = latest_checkpoint(self.stage.workdir / CHECKPOINTS)
        where = f"the last good checkpoint is {found}" if found else "no checkpoint was written yet"
        bad = ", ".join(f"{k}={v}" for k, v in {**values, "grad_norm": grad_norm}.items() if not math.isfinite(v))
        raise MinilmError(
            f"training stopped at step {progress.step + 1}: {bad} is not finite; {where}; lower distill.train.lr "
            "(or raise warmup) and continue with --resume"
        )

    def _report(self, progress, parts, grad_norm, window, bar, task) -> tuple[float, int]:
        now = time.perf_counter()
        rate = (progress.tokens - window[1]) / max(now - window[0], 1e-9)
        record = {"step": progress.step, "lr": self.optimizer.param_groups[0]["lr"], **parts,
                  "grad_norm": grad_norm, "tokens": progress.tokens, "tokens_per_s": round(rate, 1), "bf16": self.bf16}
        progress.last = {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.log.write(record)
        text = _describe(record, self.objective.parts)
        bar.update(task, info=text)
        if self.info.is_main and not progress_enabled():
            print(f"{self.stage.label} step {progress.step}/{self.spec.total_steps()} {text}", file=sys.stderr)
        return now, progress.tokens


def _describe(record: dict, parts: tuple[str, ...]) -> str:
    detail = " ".join(f"{p} {record[p]:.4f}" for p in parts)
    return f"loss {record['loss']:.4f} ({detail}) {record['tokens_per_s']:.0f} tok/s"

