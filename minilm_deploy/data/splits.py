"""Seeded, recorded splits and the no-leak rules, as pure functions over `Example`s.

Splits are assigned by hashing: an item (or its group, e.g. a movie) goes to a split by
`sha256(f"{seed}:{key}")`, so the assignment depends only on the seed and the item itself,
never on file order or on which other items exist. Two tasks drawn from one pool (Reuters R8
inside R52) therefore put a shared document in the same split.

Texts are compared by `text_key`: case-folded, NFKC-normalised, every non-word character
removed, so "He's great ." and "he's great." are one text (the Pang & Lee sentences and the
Rotten Tomatoes snippets differ exactly like that).
"""

from __future__ import annotations

import functools
import hashlib
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from minilm_deploy.data.types import Example

T = TypeVar("T")

EVAL_LINE_MIN_CHARS = 20  # lines of multi-line evaluation texts at least this long (as keys) count too
_NON_WORD = re.compile(r"[\W_]+")
_ASCII_NON_ALNUM = {i: None for i in range(128) if chr(i) not in string.ascii_letters + string.digits}


@functools.lru_cache(maxsize=1 << 19)
def text_key(text: str) -> str:
    """The comparison key of a text: case-folded word characters only (the stripped text if none)."""
    if text.isascii():  # the common case, ten times faster than the regex
        key = text.lower().translate(_ASCII_NON_ALNUM)
    else:
        key = _NON_WORD.sub("", unicodedata.normalize("NFKC", text).casefold())
    return key or text.strip()


def example_key(ex: Example) -> str:
    return text_key(ex.text) if ex.text_pair is None else f"{text_key(ex.text)}\x00{text_key(ex.text_pair)}"


def eval_keys(examples: Iterable[Example]) -> set[str]:
    """Keys an evaluation split forbids elsewhere: each whole text (and pair), each text alone, and
    each line of a multi-line text (reviews are one sentence per line) with a key of 20+ characters."""
    keys: set[str] = set()
    for ex in examples:
        keys.add(example_key(ex))
        for text in (ex.text, ex.text_pair):
            if text is None:
                continue
            keys.add(text_key(text))
            lines = text.splitlines()
            for line in lines if len(lines) > 1 else ():
                k = text_key(line)
                if len(k) >= EVAL_LINE_MIN_CHARS:
                    keys.add(k)
    return keys


def leaks(examples: Iterable[Example], forbidden: set[str]) -> list[Example]:
    """The examples whose text (or pair) matches a forbidden key."""
    return [ex for ex in examples if _keys_of(ex) & forbidden]


def _keys_of(ex: Example) -> set[str]:
    keys = {example_key(ex), text_key(ex.text)}
    if ex.text_pair is not None:
        keys.add(text_key(ex.text_pair))
    return keys


def unit_hash(key: str, seed: int) -> float:
    """A number in [0, 1) fixed by (seed, key)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(key: str, seed: int, fractions: Mapping[str, float]) -> str:
    """The split of `key`: fractions (in order, summing to 1) cut [0, 1) into consecutive ranges."""
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"split fractions must sum to 1, got {total}")
    u, edge = unit_hash(key, seed), 0.0
    for name, share in fractions.items():
        edge += share
        if u < edge:
            return name
    return list(fractions)[-1]


def split_by(items: Sequence[T], key: Callable[[T], str], seed: int, fractions: Mapping[str, float]) -> dict[str, list[T]]:
    """Items grouped by `key` (a group, e.g. a movie, or the text itself), each group to one split."""
    out: dict[str, list[T]] = {name: [] for name in fractions}
    for item in items:
        out[assign(key(item), seed, fractions)].append(item)
    return out


def dedupe(examples: Sequence[Example]) -> tuple[list[Example], dict[str, int]]:
    """Keep the first of each text; drop every copy of a text that carries two different labels."""
    labels: dict[str, set[object]] = {}
    for ex in examples:
        labels.setdefault(example_key(ex), set()).add(ex.label)
    seen: set[str] = set()
    kept: list[Example] = []
    conflicting = 0
    for ex in examples:
        k = example_key(ex)
        if len(labels[k]) > 1:
            conflicting += 1
        elif k not in seen:
            seen.add(k)
            kept.append(ex)
    return kept, {"duplicates": len(examples) - len(kept) - conflicting, "conflicting_labels": conflicting}


def decontaminate(splits: Mapping[str, Sequence[Example]], train: str = "train", dev: str = "dev") -> tuple[dict[str, list[Example]], dict[str, int]]:
    """Remove from `dev` what any test split holds and from `train` what dev or any test split holds.

    Test splits are every split other than train and dev; they are never changed.
    """
    tests = [name for name in splits if name not in (train, dev)]
    test_keys = set().union(*(eval_keys(splits[name]) for name in tests)) if tests else set()
    out = {name: list(rows) for name, rows in splits.items()}
    removed: dict[str, int] = {}
    if dev in out:
        out[dev], removed[dev] = _without(out[dev], test_keys)
        test_keys |= eval_keys(out[dev])
    if train in out:
        out[train], removed[train] = _without(out[train], test_keys)
    return out, removed


def _without(rows: Sequence[Example], forbidden: set[str]) -> tuple[list[Example], int]:
    kept = [ex for ex in rows if not (_keys_of(ex) & forbidden)]
    return kept, len(rows) - len(kept)


def label_counts(examples: Iterable[Example]) -> dict[str, int]:
    counts = Counter(str(ex.label) for ex in examples)
    return dict(sorted(counts.items()))
