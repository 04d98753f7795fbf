"""Option types shared by several commands, declared once as `Annotated` aliases."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

RecipePath = Annotated[Path, typer.Argument(help="A recipe YAML file, e.g. recipes/quickstart.yaml.", show_default=False)]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a recipe value, type-checked: --set distill.train.steps=200 (repeatable).", show_default=False),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object on stdout.")]
OutputDir = Annotated[Path | None, typer.Option("--output", "-o", help="Output directory (default: from the recipe).", show_default=False)]


def emit(result: dict[str, Any], as_json: bool, human: str | None = None) -> None:
    """Print a command's result: JSON on stdout with `--json`, else a human summary."""
    if as_json:
        sys.stdout.write(json.dumps(result, indent=None, sort_keys=True, default=str) + "\n")
    elif human is not None:
        typer.echo(human)
