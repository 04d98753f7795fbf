"""The `finetune:` section of a recipe (owned by the fine-tuning stage)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FinetuneRecipe:
    task: str = "zoo:rotten-tomatoes"
    epochs: int = 1
