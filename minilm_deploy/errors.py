"""The project's error types: one line that says what is wrong and how to fix it.

The CLI's top-level handler maps these to exit codes (2 for bad input, 1 for run-time failures)
and hides the traceback unless `--debug` is given.
"""

from __future__ import annotations


class MinilmError(Exception):
    """A known failure at run time (exit code 1)."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        # One line, always: newlines in a message would break the one-line contract.
        super().__init__(" ".join(str(message).split()))


class InputError(MinilmError):
    """Bad input from the user: a recipe, a path, a name, a flag (exit code 2)."""

    exit_code = 2


class NetworkError(MinilmError):
    """Something needed the network and could not reach it."""

    exit_code = 1


class ValidationFailed(MinilmError):
    """An output did not match its reference within tolerance; carries the figures."""

    exit_code = 1

    def __init__(self, message: str, figures: dict[str, float] | None = None) -> None:
        super().__init__(message)
        self.figures = dict(figures or {})
