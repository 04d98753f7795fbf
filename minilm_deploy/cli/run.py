"""`minilm run`: Distill a student from a teacher (MiniLM self-attention runation)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minilm_deploy.cli._stage import not_built


def command(
    target: Annotated[Path, typer.Argument(metavar="RECIPE", help="Input folder.", show_default=False)],
) -> None:
    """Distill a student from a teacher (MiniLM self-attention runation).

    Example: minilm run recipes/quickstart.yaml
    """
    raise not_built("run", 7)
