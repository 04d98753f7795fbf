"""Filesystem facts shared by every stage: the cache root, atomic writes, and the checks and messages for
paths we write to (one mapping of operating-system errors to one line)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path


def cache_root() -> Path:
    """`$MINILM_CACHE`, or `~/.cache/minilm-deploy`."""
    env = os.environ.get("MINILM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "minilm-deploy"


WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EEXIST, errno.ENOTDIR,
                errno.EISDIR, errno.ENAMETOOLONG}
ADVICE = {errno.ENOSPC: "free some disk space and run it again", errno.EDQUOT: "free some disk space and run it again",
          errno.EACCES: "choose a folder you can write to", errno.EPERM: "choose a folder you can write to",
          errno.EROFS: "choose a folder on a writable disk", errno.ENOTDIR: "a part of the path is a file, not a folder",
          errno.EEXIST: "remove it or choose another path", errno.EISDIR: "it is a folder; give a file path"}


def os_error_line(exc: OSError, *, path: Path | str | None = None, writing: bool = False) -> str:
    """One line for an operating-system error: `cannot write PATH: reason; what to do` (`path`: the file the
    user named, when the error is about a temporary one beside it)."""
    path = path if path is not None else exc.filename if exc.filename is not None else "a file"
    verb = "cannot write" if writing or exc.errno in WRITE_ERRNOS else "cannot access"
    reason = exc.strerror or type(exc).__name__
    advice = ADVICE.get(exc.errno or 0)
    return f"{verb} {path}: {reason.lower()}" + (f"; {advice}" if advice else "")


def check_writable(target: Path, flag: str = "--output") -> None:
    """Before any work: `target` (a folder to be created, or replaced) can be written. Its nearest existing
    ancestor must be a writable folder; a regular file on the way is named."""
    from minilm_deploy.errors import InputError

    target = Path(target).absolute()
    if target.exists() and not target.is_dir():
        raise InputError(f"cannot write {target}: it is a file, not a folder; choose another {flag}")
    ancestor = target.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"cannot write {target}: {ancestor} is a file, not a folder; choose another {flag}")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {target}: {ancestor} is not writable (permission denied); choose another {flag}")


@contextlib.contextmanager
def atomic_directory(final: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; rename it to `final` only if the block succeeds.

    On any exception the temporary directory is removed and `final` is left as it was, so a
    reader never sees a half-written artifact.
    """
    from minilm_deploy.errors import MinilmError

    final = Path(final)
    tmp: Path | None = None
    try:
        with interrupts_held():  # a Ctrl-C between making the folder and knowing its name would leave it behind
            try:
                final.parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
            except OSError as exc:  # the place refuses new folders: name the one the user asked for
                raise MinilmError(os_error_line(exc, path=final, writing=True)) from None
            tmp.chmod(0o755)  # mkdtemp makes it private (0700); outputs are meant to be shared and served
        yield tmp  # a Ctrl-C held above is raised on leaving that block, here inside the `try`
        if final.exists():
            if not overwrite:
                raise FileExistsError(f"{final} already exists")
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            final.rename(old)
            tmp.rename(final)
            remove_tree(old)
        else:
            tmp.rename(final)
    except BaseException:
        if tmp is not None:
            remove_tree(tmp)
        raise


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM until the block ends, then deliver the first one that came.

    For cleanup that must not stop half-way: Python 3.11's `shutil.rmtree` closes a directory's descriptor
    and only then records it closed, so a KeyboardInterrupt raised between the two makes its `finally`
    close it again, and the interrupt surfaces as "OSError: bad file descriptor"."""
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set in the main thread
        yield
        return
    came: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, lambda signum, frame: came.append(signum)) for signum in held}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)  # None: set outside Python
        if came:
            signal.raise_signal(came[0])


def remove_tree(folder: Path) -> None:
    """Remove `folder` and everything in it, whole even when interrupted; a missing folder is no error."""
    with interrupts_held():
        shutil.rmtree(folder, ignore_errors=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
