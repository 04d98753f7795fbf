"""`minilm eval`: Evaluate a fine-tuned model on a task split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minilm_deploy.cli._stage import not_built


def command(
    target: Annotated[Path, typer.Argument(metavar="MODEL", help="Input folder.", show_default=False)],
) -> None:
    """Evaluate a fine-tuned model on a task split.

    Example: minilm eval runs/quickstart/student-task --task zoo:rotten-tomatoes --split test
    """
    raise not_built("eval", 4)
