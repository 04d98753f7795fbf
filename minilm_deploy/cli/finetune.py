"""`minilm finetune`: Fine-tune an encoder on a downstream task."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minilm_deploy.cli._stage import not_built


def command(
    target: Annotated[Path, typer.Argument(metavar="MODEL", help="Input folder.", show_default=False)],
) -> None:
    """Fine-tune an encoder on a downstream task.

    Example: minilm finetune runs/quickstart/student --task zoo:rotten-tomatoes
    """
    raise not_built("finetune", 4)
