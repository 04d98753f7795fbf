"""The zoo's entry type and the operations on it: list, pull, path.

An entry is a name, its licence, the pinned archives it comes from and a `build` function that
writes its files into a directory. `pull` runs `build` once, atomically and under a lock, into
`cache_root()/<kind>s/<name>`; afterwards the entry is read from disk without the network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from minilm_deploy.errors import InputError
from minilm_deploy.paths import cache_root
from minilm_deploy.zoo.archives import Archive, is_materialized, materialize

ZooKind = Literal["model", "dataset", "corpus"]
_FOLDERS: dict[str, str] = {"model": "models", "dataset": "datasets", "corpus": "corpora"}


@dataclass(frozen=True)
class ZooEntry:
    name: str
    kind: ZooKind
    description: str
    license: str  # shown by `minilm zoo list`; "personal use" sources say so here
    archives: tuple[Archive, ...]
    build: Callable[[Path], None]  # writes the entry's files into the given (empty) directory

    @property
    def relpath(self) -> str:
        return f"{_FOLDERS[self.kind]}/{self.name}"


def _catalog() -> dict[str, ZooEntry]:
    from minilm_deploy.zoo.catalog import CATALOG

    return CATALOG


def names(kind: ZooKind | None = None) -> list[str]:
    return sorted(n for n, e in _catalog().items() if kind is None or e.kind == kind)


def get(name: str) -> ZooEntry:
    name = name.removeprefix("zoo:")
    entry = _catalog().get(name)
    if entry is None:
        raise InputError(f"unknown zoo name {name!r}; known names: {', '.join(names())} (see `minilm zoo list`)")
    return entry


def pull(name: str) -> Path:
    """The entry's folder in the cache, fetched and built first if needed."""
    entry = get(name)
    return materialize(entry.relpath, entry.build)


def cached_path(name: str) -> Path | None:
    entry = get(name)
    return cache_root() / entry.relpath if is_materialized(entry.relpath) else None
