"""Rich progress bars on stderr, switched off when stderr is not a terminal."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

stderr_console = Console(stderr=True)


def progress_enabled() -> bool:
    return sys.stderr.isatty()


def make_progress(*extra_columns: TextColumn) -> Progress:
    """A progress view for long work; `disable=True` (no output) when stderr is not a TTY."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra_columns,
        console=stderr_console,
        disable=not progress_enabled(),
        transient=False,
    )
