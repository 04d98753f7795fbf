"""`minilm bench`: Benchmark latency and accuracy of artifacts against a teacher, with CI gates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minilm_deploy.cli._stage import not_built


def command(
    target: Annotated[Path, typer.Argument(metavar="ARTIFACTS", help="Input folder.", show_default=False)],
) -> None:
    """Benchmark latency and accuracy of artifacts against a teacher, with CI gates.

    Example: minilm bench runs/quickstart/export --against zoo:all-minilm-l6-v2
    """
    raise not_built("bench", 6)
