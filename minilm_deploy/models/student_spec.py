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
    # random (the paper's); teacher-layers: copies of some teacher layers (equal widths); teacher-pruned: copies
    # of some teacher layers narrowed to the student's width, keeping the residual channels, heads and FFN
    # neurons most active on the distillation corpus (Minitron's width pruning; `models/prune.py`)
    init: Literal["random", "teacher-layers", "teacher-pruned"] = "random"
    # teacher-layers, teacher-pruned: the 0-based teacher layers to copy, one per student layer, increasing
    # (e.g. [0, 2, 5]); default: spread over the teacher with its first and last layer kept
    init_layers: tuple[int, ...] | None = None
    # hidden and attention dropout; default: the teacher's. Part of the student's config: saved with it, so fine-tuning
    # uses it too. On a CPU both trainers run it through `models.cpu_training`'s fast dropout
    dropout: float | None = None
    # teacher-pruned: after the copy, refit each layer's attention-output and FFN-output Linears by least squares on
    # the calibration text, bottom layer first, so that each residual sum matches the full-width copy's at the kept
    # channels given the student's own inputs (FLAP/ZipLM-style reconstruction; `models/prune.py`)
    refit: bool = False

    def __post_init__(self) -> None:
        if self.layers < 1 or self.hidden < 1:
            raise ValueError(f"student.layers and student.hidden must be positive, got {self.layers}, {self.hidden}")
        if self.heads is not None and (self.heads < 1 or self.hidden % self.heads):
            raise ValueError(f"student.heads={self.heads} must divide student.hidden={self.hidden}")
        if self.ffn is not None and self.ffn < 1:
            raise ValueError(f"student.ffn must be positive, got {self.ffn}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"student.dropout must be in [0, 1), got {self.dropout}")
        if self.refit and self.init != "teacher-pruned":
            raise ValueError("student.refit refits a pruned copy of the teacher: it needs init: teacher-pruned")
        if self.init_layers is not None:
            if not self.copies_layers:
                raise ValueError("student.init_layers picks the teacher layers to copy: it needs init: teacher-layers "
                                 "or teacher-pruned")
            if len(self.init_layers) != self.layers:
                raise ValueError(f"student.init_layers={list(self.init_layers)}: give one teacher layer per student "
                                 f"layer ({self.layers}), 0-based")

    @property
    def copies_layers(self) -> bool:
        """Whether the student starts from copies of teacher layers (whole or pruned to its width)."""
        return self.init != "random"

    @property
    def ffn_size(self) -> int:
        return self.ffn or 4 * self.hidden
