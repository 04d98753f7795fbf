"""Export profiles (`exporters/*.yaml`) and the `export:` section of a recipe (owned by export)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExportProfile:
    precision: str = "int8"
    opset: int = 17
