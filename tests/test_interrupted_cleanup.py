"""Ctrl-C that lands inside cleanup: the folder is removed whole and the run ends as interrupted (exit 130),
never as "cannot access a file: bad file descriptor" (a flaky end-to-end Ctrl-C test found it)."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from minilm_deploy.cli.main import raised_during_an_interrupt
from minilm_deploy.paths import interrupts_held, remove_tree
from tests.fresh_process import in_a_fresh_process


def _tree(root: Path) -> Path:
    for sub in ("a", "b/c"):
        (root / sub).mkdir(parents=True)
        (root / sub / "weights.bin").write_bytes(b"x" * 100)
    return root


@contextmanager
def _sigint_after_first_close() -> Iterator[None]:
    """Deliver SIGINT right after the first `os.close` returns: the instant at which Python 3.11's rmtree has
    closed a directory's descriptor but not yet recorded that (its `finally` then closes it again). The real
    close runs; Python handles the signal at its next check, in the caller, as it would after a real Ctrl-C."""
    real_close, sent = os.close, []

    def close_then_sigint(fd: int) -> None:
        real_close(fd)
        if not sent:
            sent.append(fd)
            signal.raise_signal(signal.SIGINT)

    os.close = close_then_sigint
    try:
        yield
    finally:
        os.close = real_close
    assert sent, "rmtree closed no directory descriptor"


def check_plain_rmtree(root: Path) -> None:
    with pytest.raises(OSError) as caught, _sigint_after_first_close():
        shutil.rmtree(_tree(root), ignore_errors=True)
    assert caught.value.errno == 9 and raised_during_an_interrupt(caught.value)


def check_remove_tree(root: Path) -> None:
    folder = _tree(root)
    with pytest.raises(KeyboardInterrupt), _sigint_after_first_close():
        remove_tree(folder)
    assert not folder.exists()
    remove_tree(folder)  # already gone: no error


def check_interrupts_held(root: Path) -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_held():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
            reached.append("after the signals")
    assert reached == ["after the signals"]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    with interrupts_held():
        pass  # nothing came: nothing delivered


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the race is in Python 3.11's shutil.rmtree")
def test_plain_rmtree_turns_that_ctrl_c_into_bad_file_descriptor(tmp_path: Path) -> None:
    """The stdlib behaviour remove_tree exists for; if this stops failing, the race is gone from rmtree."""
    in_a_fresh_process(__file__, "check_plain_rmtree", tmp_path / "run")


def test_remove_tree_removes_the_whole_folder_then_delivers_the_ctrl_c(tmp_path: Path) -> None:
    in_a_fresh_process(__file__, "check_remove_tree", tmp_path / "run")


def test_interrupts_held_delivers_the_first_signal_at_the_end_and_restores_the_handlers(tmp_path: Path) -> None:
    in_a_fresh_process(__file__, "check_interrupts_held", tmp_path / "run")


def _raise_in_cleanup(cleanup: Callable[[], None]) -> BaseException:
    try:
        try:
            raise KeyboardInterrupt
        finally:
            cleanup()
    except BaseException as exc:  # noqa: BLE001 - what the CLI sees
        return exc
    raise AssertionError("nothing was raised")


def test_an_os_error_raised_while_a_ctrl_c_unwinds_counts_as_the_interrupt(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    os.close(fd)
    double_close = _raise_in_cleanup(lambda: os.close(fd))  # a real EBADF, raised in a `finally`
    assert isinstance(double_close, OSError) and raised_during_an_interrupt(double_close)
    assert not raised_during_an_interrupt(OSError(28, "No space left on device"))
    try:
        try:
            raise ValueError("not an interrupt")
        except ValueError:
            os.close(fd)
    except OSError as exc:
        assert not raised_during_an_interrupt(exc)
