"""SIGTERM during fine-tuning unwinds like Ctrl-C, at a safe point.

Raising from a signal handler can land inside a finalizer, where Python prints "Exception
ignored" and carries on; so the handler only sets a flag, and the training and evaluation loops
call `check()` after each batch; it raises `SafeStop`, a KeyboardInterrupt raised where the training
state is whole, so the trainer checkpoints it before unwinding. A second SIGTERM raises at once. The
unwinding removes the temporary output folder (see `paths.atomic_directory`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

_stop = threading.Event()


class SafeStop(KeyboardInterrupt):
    """A requested termination, raised between optimizer steps (the model and optimizer are consistent)."""


def check() -> None:
    """Raise SafeStop if a termination was requested."""
    if _stop.is_set():
        raise SafeStop


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # signals only reach the main thread
        yield
        return

    def request(signum: int, frame: Any) -> None:
        if _stop.is_set():
            raise KeyboardInterrupt
        _stop.set()

    _stop.clear()
    previous = signal.signal(signal.SIGTERM, request)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop.clear()
