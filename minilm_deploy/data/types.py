"""Data types that cross module boundaries: labelled examples and tasks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

TaskKind = Literal["classification", "regression"]


@dataclass(frozen=True)
class Example:
    text: str
    text_pair: str | None = None  # set for sentence-pair tasks
    label: str | float | None = None  # class name, or a float for regression; None when unlabelled


@dataclass(frozen=True)
class TaskData:
    """A labelled task with its splits ("train", "dev", "test"; dev may be absent)."""

    name: str
    kind: TaskKind
    splits: dict[str, tuple[Example, ...]]
    label_names: tuple[str, ...] = ()  # classification: taken from the training split, sorted
    metric: str = "accuracy"  # the primary metric for model selection
    info: dict[str, Any] = field(default_factory=dict)  # source, licence, split method and seed, sizes

    @property
    def is_pair(self) -> bool:
        return any(ex.text_pair is not None for split in self.splits.values() for ex in split[:1])
