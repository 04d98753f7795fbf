"""The `distill:` section of a recipe (owned by the distillation stage)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DistillRecipe:
    corpus: str = "zoo:corpus-en"
    steps: int = 100
