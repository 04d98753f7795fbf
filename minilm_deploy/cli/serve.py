"""`minilm serve`: Serve an exported artifact over HTTP (Open Inference Protocol)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minilm_deploy.cli._stage import not_built


def command(
    target: Annotated[Path, typer.Argument(metavar="ARTIFACT", help="Input folder.", show_default=False)],
) -> None:
    """Serve an exported artifact over HTTP (Open Inference Protocol).

    Example: minilm serve runs/quickstart/export --port 8000
    """
    raise not_built("serve", 6)
