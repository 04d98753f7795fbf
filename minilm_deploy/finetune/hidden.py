"""Hidden-state distillation while fine-tuning (TinyBERT's task-specific intermediate-layer distillation, Jiao
et al. 2020, done jointly with the soft targets as TextBrewer's intermediate matches are): `finetune.distill.hidden`.

The fine-tuned teacher reads each training batch beside the student (no gradient); the student's embeddings and
each of its layers' outputs are compared with the teacher's embeddings and the teacher layer each is matched to:

- a student copied from teacher layers (its run.json records `init.teacher_layers`, as `minilm distill` writes it)
  is matched to the layers it was copied from (a width-pruned copy too); otherwise layers are evenly spaced
  (TinyBERT's m ↔ m·L_t/L_s); `finetune.distill.hidden_layers` gives them explicitly;
- a narrower student (a width-pruned one) goes through a learned linear projection to the teacher's width, trained
  with the student and not saved in it; it starts as the least-squares map from the student's states to the
  teacher's on the first batch, so the first steps do not push the student towards a random target.

The student and the teacher must share a vocabulary (the teacher reads the student's token ids).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from minilm_deploy.errors import InputError
from minilm_deploy.finetune.losses import hidden_relative_error
from minilm_deploy.finetune.recipe import TaskDistillRecipe
from minilm_deploy.models.adapters import attention_shape
from minilm_deploy.models.loading import load_config

Pairs = tuple[tuple[int, int], ...]  # (student, teacher) hidden-state indices: 0 = embeddings, i = layer i's output


@dataclass(frozen=True)
class HiddenPlan:
    """What hidden-state distillation compares, checked before any training step."""

    teacher: torch.nn.Module  # the fine-tuned teacher, as `prepare` loaded it (once for every seed)
    pairs: Pairs
    matched_by: str  # "given" (hidden_layers), "copied" (the student's init picks), "even"
    student_width: int
    teacher_width: int


def layer_pairs(student_layers: int, teacher_layers: int, given: tuple[int, ...] = (),
                picks: list[int] | None = None) -> tuple[Pairs, str]:
    """(pairs, how they were chosen): the embeddings with the embeddings, then student layer m (1-based) with
    `given[m-1]`, else with the layer it was copied from (`picks`, 0-based, when they fit this teacher), else with
    teacher layer ⌊m·L_t/L_s⌋."""
    if given:
        if len(given) != student_layers or given[-1] > teacher_layers:
            raise InputError(f"finetune.distill.hidden_layers: give {student_layers} teacher layers (one per student "
                             f"layer, each 1 to {teacher_layers}), got {list(given)}")
        layers, how = list(given), "given"
    elif picks is not None and len(picks) == student_layers and 0 <= min(picks) and max(picks) < teacher_layers:
        layers, how = [p + 1 for p in picks], "copied"
    else:
        layers, how = [max(1, m * teacher_layers // student_layers) for m in range(1, student_layers + 1)], "even"
    return ((0, 0),) + tuple(zip(range(1, student_layers + 1), layers, strict=True)), how


def copied_from(student: Path) -> list[int] | None:
    """The teacher layers (0-based) a distilled student was initialised from, as its run.json records them."""
    run = student / "run.json"
    if not run.is_file():
        return None
    init = json.loads(run.read_text(encoding="utf-8")).get("init")
    picks = init.get("teacher_layers") if isinstance(init, dict) else None
    return [int(p) for p in picks] if isinstance(picks, list) and picks else None


def plan_hidden(student: Path, teacher: Path, student_tokenizer: Any, loaded: tuple[Any, Any, Any],
                distill: TaskDistillRecipe) -> HiddenPlan:
    """Check that hidden-state distillation can run between these two models (`loaded`: the teacher's model,
    tokenizer and head from the folder `teacher`); say what it will compare."""
    teacher_model, teacher_tokenizer, _ = loaded
    if student_tokenizer.get_vocab() != teacher_tokenizer.get_vocab():
        raise InputError(f"finetune.distill.hidden: the student ({student}) and the teacher ({teacher}) have different "
                         "vocabularies, so the teacher cannot read the student's tokens; set finetune.distill.hidden to 0 "
                         "(the soft targets work across tokenizers)")
    (s_layers, s_width, _), (t_layers, t_width, _) = attention_shape(load_config(student)), attention_shape(teacher_model.config)
    pairs, how = layer_pairs(s_layers, t_layers, distill.hidden_layers, copied_from(student))
    return HiddenPlan(teacher_model, pairs, how, s_width, t_width)


class HiddenAlignment(torch.nn.Module):
    """The frozen teacher (held aside: never trained, never saved) and the projection (trained with the student;
    its state goes into fine-tuning checkpoints, not into the model folder)."""

    def __init__(self, plan: HiddenPlan, device: torch.device) -> None:
        super().__init__()
        self.pairs = plan.pairs
        self._teacher = [plan.teacher.to(device).eval().requires_grad_(False)]  # a list: not a submodule
        same = plan.student_width == plan.teacher_width
        self.projection = torch.nn.Identity() if same else torch.nn.Linear(plan.student_width, plan.teacher_width, bias=False)
        self.projection.to(device)
        self.fitted: torch.Tensor  # the projection's least-squares start made (a buffer: checkpointed with it)
        self.register_buffer("fitted", torch.tensor(same, device=device))

    def teacher_states(self, batch: dict[str, torch.Tensor], bf16: bool) -> tuple[torch.Tensor, ...]:
        """The teacher's hidden states on `batch` ((B, T, D_t) each), under bf16 autocast if `bf16`."""
        device = batch["input_ids"].device.type
        with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            return self._teacher[0](**batch, output_hidden_states=True).hidden_states

    def loss(self, student_states: tuple[torch.Tensor, ...], teacher_states: tuple[torch.Tensor, ...],
             mask: torch.Tensor) -> torch.Tensor:
        """The mean over the matched pairs of `hidden_relative_error`, in float32; mask (B, T)."""
        pairs = [(student_states[s].float(), teacher_states[t].float()) for s, t in self.pairs]  # (B, T, D_s), (B, T, D_t)
        if not bool(self.fitted):
            self.fit(pairs, mask)
        return torch.stack([hidden_relative_error(self.projection(s), t, mask) for s, t in pairs]).mean()

    @torch.no_grad()
    def fit(self, pairs: list[tuple[torch.Tensor, torch.Tensor]], mask: torch.Tensor) -> None:
        """Set the projection to the ridge least-squares map from the student's real-token states to the teacher's."""
        real = mask.bool()
        s = torch.cat([a[real] for a, _ in pairs]).double()  # (N, D_s)
        t = torch.cat([b[real] for _, b in pairs]).double()  # (N, D_t)
        gram = s.T @ s  # (D_s, D_s)
        ridge = 1e-3 * gram.diagonal().mean().clamp_min(1e-12) * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
        weight = torch.linalg.solve(gram + ridge, s.T @ t)  # (D_s, D_t)
        assert isinstance(self.projection, torch.nn.Linear)
        self.projection.weight.copy_(weight.T.to(self.projection.weight.dtype))
        self.fitted.fill_(True)
