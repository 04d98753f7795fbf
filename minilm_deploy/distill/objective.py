"""The distillation objective: which relations, which heads, which weights (from `LossSpec`).

Each loss part names a relation between two captured projections; a new part is one line in
`RELATIONS`, a new loss kind one line in `recipe.LOSS_PARTS`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from minilm_deploy.distill.capture import RelationStates
from minilm_deploy.distill.losses import relation_kl_sum
from minilm_deploy.distill.recipe import LOSS_PARTS, LossSpec
from minilm_deploy.errors import InputError

# part → (left, right): relation softmax(left · rightᵀ / √d)
RELATIONS: dict[str, tuple[str, str]] = {
    "attention": ("query", "key"),
    "value": ("value", "value"),
    "query": ("query", "query"),
    "key": ("key", "key"),
}


@dataclass
class LossOutput:
    """The total (what backward runs on) and its named, weighted parts (detached, for logging)."""

    total: Tensor
    parts: dict[str, Tensor]


class MiniLMObjective:
    """Sum over parts of weight × mean KL(teacher ‖ student) of that relation."""

    def __init__(self, spec: LossSpec, teacher_heads: int, student_heads: int) -> None:
        self.spec = spec
        self.parts = LOSS_PARTS[spec.kind]
        self.heads = self._relation_heads(spec, teacher_heads, student_heads)
        self.row_heads = self.heads or teacher_heads  # the KL is averaged over these heads
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
        needed = {name for part in self.parts for name in RELATIONS[part]}
        return tuple(p for p in ("query", "key", "value") if p in needed)

    def sums(self, teacher: RelationStates, student: RelationStates) -> tuple[dict[str, Tensor], int]:
        """Per part: Σ KL over relation heads and real query rows; and the count it is a sum over."""
        sums: dict[str, Tensor] = {}
        count = 0
        for part in self.parts:
            left, right = RELATIONS[part]
            bias = self.use_bias and part == "attention"
            sums[part], count = relation_kl_sum(
                (teacher.get(left), teacher.get(right)),
                (student.get(left), student.get(right)),
                student.mask,
                self.heads,
                teacher.score_bias if bias else None,
                student.score_bias if bias else None,
            )
        return sums, count

    def __call__(self, teacher: RelationStates, student: RelationStates, denominator: float | None = None) -> LossOutput:
        """The weighted loss; `denominator` replaces the local count (heads × real query rows of the
        whole global batch, so micro-batches and processes add up to the global-batch mean)."""
        sums, count = self.sums(teacher, student)
        scale = 1.0 / (denominator if denominator is not None else max(count, 1))
        parts = {name: self.spec.weight(name) * value * scale for name, value in sums.items()}
        total = sum(parts.values())
        assert isinstance(total, Tensor)
        return LossOutput(total=total, parts={k: v.detach() for k, v in parts.items()})
