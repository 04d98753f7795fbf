"""`minilm export`: Export a model folder to a validated ONNX artifact (and a TensorRT engine with --trt)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minilm_deploy.cli._stage import not_built


def command(
    target: Annotated[Path, typer.Argument(metavar="MODEL", help="Input folder.", show_default=False)],
) -> None:
    """Export a model folder to a validated ONNX artifact (and a TensorRT engine with --trt).

    Example: minilm export runs/quickstart/student-task --profile exporters/onnx-cpu-int8.yaml
    """
    raise not_built("export", 5)
