"""The distillation objective: which relations, which heads, which weights (from `LossSpec`).

Each relation part names a relation between two captured projections; a new part is one line in
`RELATIONS`, a new loss kind one line in `recipe.LOSS_PARTS`. The alignment parts (`hidden`,
`embedding`) compare the captured layer's output hidden states; where the widths differ, the
student's go through a learned projection (`make_projection`), trained with the student and not
saved in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from minilm_deploy.distill.capture import RelationStates
from minilm_deploy.distill.losses import pooled_mse_sum, relation_kl_sum, token_cosine_sum
from minilm_deploy.distill.recipe import ALIGNMENT_PARTS, LossSpec
from minilm_deploy.errors import InputError

# part → (left, right): relation softmax(left · rightᵀ / √d)
RELATIONS: dict[str, tuple[str, str]] = {
    "attention": ("query", "key"),
    "value": ("value", "value"),
    "query": ("query", "query"),
    "key": ("key", "key"),
}
# alignment part → (Σ-and-count function of (student, teacher, mask), what its sum is normalised by)
ALIGNMENTS = {
    "hidden": (token_cosine_sum, "tokens"),
    "embedding": (pooled_mse_sum, "sequences"),
}


@dataclass
class LossOutput:
    """The total (what backward runs on) and its named, weighted parts (detached, for logging)."""

    total: Tensor
    parts: dict[str, Tensor]


@dataclass(frozen=True)
class Counts:
    """What the parts' sums are divided by: the real tokens and the sequences of the (global) batch."""

    tokens: float
    sequences: float


class MiniLMObjective:
    """Σ over parts of weight × mean of that part: KL(teacher ‖ student) per relation head and real
    query row for relations, per real token for `hidden`, per sequence for `embedding`."""

    def __init__(self, spec: LossSpec, teacher_heads: int, student_heads: int) -> None:
        self.spec = spec
        self.parts = spec.active_parts()
        self.relations = tuple(p for p in self.parts if p in RELATIONS)
        self.alignments = tuple(p for p in self.parts if p in ALIGNMENT_PARTS)
        self.heads = self._relation_heads(spec, teacher_heads, student_heads) if self.relations else None
        self.row_heads = self.heads or teacher_heads  # a relation's KL is averaged over these heads
        # The score bias (MPNet's relative positions) belongs to the model's own attention heads.
        self.use_bias = "attention" in self.parts and self.heads in (None, teacher_heads) and (
            self.heads in (None, student_heads)
        )

    @staticmethod
    def _relation_heads(spec: LossSpec, teacher_heads: int, student_heads: int) -> int | None:
        if spec.relation_heads is not None:
            return spec.relation_heads
        if spec.kind == "minilmv2":
            return teacher_heads
        if teacher_heads != student_heads:
            raise InputError(
                f"loss kind {spec.kind!r} compares attention head by head, but the teacher has {teacher_heads} heads "
                f"and the student {student_heads}: set distill.student.heads={teacher_heads}, or set "
                f"distill.loss.relation_heads (e.g. {teacher_heads}) or distill.loss.kind=minilmv2"
            )
        return None

    def captured_parts(self) -> tuple[str, ...]:
        needed = {name for part in self.relations for name in RELATIONS[part]}
        if self.alignments:
            needed.add("hidden")
        return tuple(p for p in ("query", "key", "value", "hidden") if p in needed)

    def sums(self, teacher: RelationStates, student: RelationStates) -> tuple[dict[str, Tensor], Counts]:
        """Per part: its sum (over relation heads and real query rows, real tokens or sequences);
        and the local counts those sums are over."""
        sums: dict[str, Tensor] = {}
        for part in self.relations:
            left, right = RELATIONS[part]
            bias = self.use_bias and part == "attention"
            sums[part], _ = relation_kl_sum(
                (teacher.get(left), teacher.get(right)),
                (student.get(left), student.get(right)),
                student.mask,
                self.heads,
                teacher.score_bias if bias else None,
                student.score_bias if bias else None,
            )
        for part in self.alignments:
            function, _ = ALIGNMENTS[part]
            sums[part], _ = function(student.get("hidden"), teacher.get("hidden"), student.mask)
        mask = student.mask.bool()
        return sums, Counts(tokens=float(mask.sum().item()), sequences=float(mask.shape[0]))

    def __call__(self, teacher: RelationStates, student: RelationStates, counts: Counts | None = None) -> LossOutput:
        """The weighted loss; `counts` replaces the local counts (those of the whole global batch, so
        micro-batches and processes add up to the global-batch mean)."""
        sums, local = self.sums(teacher, student)
        counts = counts or local
        parts = {name: self.spec.weight(name) * value / self._count(name, counts) for name, value in sums.items()}
        total = sum(parts.values())
        assert isinstance(total, Tensor)
        return LossOutput(total=total, parts={k: v.detach() for k, v in parts.items()})

    def _count(self, part: str, counts: Counts) -> float:
        if part in RELATIONS:
            return max(self.row_heads * counts.tokens, 1.0)
        return max(getattr(counts, ALIGNMENTS[part][1]), 1.0)


def make_projection(objective: MiniLMObjective, student_width: int, teacher_width: int,
                    channels: Sequence[int] | None = None) -> nn.Module | None:
    """The learned map of the student's hidden states to the teacher's width, where the alignment
    parts need one (a bias-free linear layer, initialised like any nn.Linear); else None.
    `channels`: the teacher channel each student channel was pruned from (`init: teacher-pruned`):
    the map then starts as that selection, so the alignment compares like with like from step 0."""
    if not objective.alignments or student_width == teacher_width:
        return None
    projection = nn.Linear(student_width, teacher_width, bias=False)  # weight (teacher, student)
    if channels is not None:
        with torch.no_grad():
            projection.weight.zero_()
            projection.weight[torch.as_tensor(list(channels)), torch.arange(student_width)] = 1.0
    return projection
