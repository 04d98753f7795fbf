"""`minilm distill`: Distill a student from a teacher (MiniLM self-attention distillation)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minilm_deploy.cli._stage import not_built


def command(
    target: Annotated[Path, typer.Argument(metavar="RECIPE", help="Input folder.", show_default=False)],
) -> None:
    """Distill a student from a teacher (MiniLM self-attention distillation).

    Example: minilm distill recipes/quickstart.yaml
    """
    raise not_built("distill", 3)
