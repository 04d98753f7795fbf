"""Recipes: one YAML file describes a run from teacher to benchmark.

Loaded strictly into frozen dataclasses (see `config.py`); `--set a.b=value` overrides are
type-checked the same way; the effective recipe is saved into every output directory.
Each stage owns its section's dataclass; this module only composes them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from minilm_deploy.bench.suite import BenchSuite
from minilm_deploy.config import deep_merge, from_dict, load_yaml, parse_overrides, to_dict
from minilm_deploy.distill.recipe import DistillRecipe
from minilm_deploy.errors import InputError
from minilm_deploy.export.profile import ExportProfile
from minilm_deploy.finetune.recipe import FinetuneRecipe
from minilm_deploy.paths import atomic_write_text

RECIPE_FILE = "recipe.yaml"  # the name of the effective recipe inside every output directory


@dataclass(frozen=True)
class Recipe:
    name: str
    teacher: str  # a local folder, a hub id, or zoo:NAME
    output_dir: str = ""  # default: runs/<name>
    seed: int = 0
    distill: DistillRecipe | None = None
    finetune: FinetuneRecipe | None = None
    export: ExportProfile | Literal["auto"] | None = None  # auto: every CPU path built, timed, the fastest kept
    bench: BenchSuite | None = None

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"name must be a non-empty folder name, got {self.name!r}")

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}")


def recipe_from_dict(data: dict[str, Any], *, source: str = "recipe") -> Recipe:
    return from_dict(Recipe, data, source=source)


def load_recipe(path: Path | str, overrides: list[str] | tuple[str, ...] | None = None) -> Recipe:
    """Read `path`, apply `--set` overrides, and check every key and type."""
    path = Path(path)
    data = load_yaml(path)
    if overrides:
        data = deep_merge(data, parse_overrides(list(overrides)))
    return recipe_from_dict(data, source=path.name)


def recipe_to_yaml(recipe: Any) -> str:
    return yaml.safe_dump(to_dict(recipe), sort_keys=False)


def save_recipe(recipe: Any, directory: Path) -> Path:
    """Write the effective recipe (or any config dataclass) as `recipe.yaml` into `directory`."""
    target = Path(directory) / RECIPE_FILE
    atomic_write_text(target, recipe_to_yaml(recipe))
    return target


def with_output_dir(recipe: Recipe, output: Path | None) -> Recipe:
    if output is None:
        return recipe
    if str(output).strip() == "":
        raise InputError("--output: empty path; give a folder name")
    return replace(recipe, output_dir=str(output))
