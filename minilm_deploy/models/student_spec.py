"""The student's shape, as the `distill.student:` recipe section gives it (owned by `models/`: the student
builder reads it; the distillation recipe embeds it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class StudentSpec:
    layers: int = 6
    hidden: int = 384
    heads: int | None = None  # default: the teacher's head count (MiniLM v1 needs it equal)
    ffn: int | None = None  # default: 4 × hidden
    init: Literal["random", "teacher-layers"] = "random"
    # teacher-layers: the 0-based teacher layers to copy, one per student layer, increasing (e.g. [0, 2, 5]);
    # default: spread over the teacher with its first and last layer kept
    init_layers: tuple[int, ...] | None = None
    dropout: float | None = None  # hidden and attention dropout; default: the teacher's

    def __post_init__(self) -> None:
        if self.layers < 1 or self.hidden < 1:
            raise ValueError(f"student.layers and student.hidden must be positive, got {self.layers}, {self.hidden}")
        if self.heads is not None and (self.heads < 1 or self.hidden % self.heads):
            raise ValueError(f"student.heads={self.heads} must divide student.hidden={self.hidden}")
        if self.ffn is not None and self.ffn < 1:
            raise ValueError(f"student.ffn must be positive, got {self.ffn}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"student.dropout must be in [0, 1), got {self.dropout}")
        if self.init_layers is not None:
            if self.init != "teacher-layers":
                raise ValueError("student.init_layers picks the teacher layers to copy: it needs init: teacher-layers")
            if len(self.init_layers) != self.layers:
                raise ValueError(f"student.init_layers={list(self.init_layers)}: give one teacher layer per student "
                                 f"layer ({self.layers}), 0-based")

    @property
    def ffn_size(self) -> int:
        return self.ffn or 4 * self.hidden
