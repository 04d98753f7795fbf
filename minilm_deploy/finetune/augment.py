"""Data augmentation for task distillation (TinyBERT's, Jiao et al. 2020, with the teacher's own word vectors).

A small task gives a distilled student few examples of what its teacher does. Each training text is copied
`copies` times with words swapped for near neighbours, and the fine-tuned teacher labels every copy: the
student learns from the teacher's soft targets there (no hard label: a swap may flip the meaning, which the
teacher's targets follow). TinyBERT draws neighbours from BERT's masked-LM head and GloVe; we have neither,
so the neighbours of a word are the words nearest to it in the teacher's input embedding matrix (cosine),
among the vocabulary entries that are whole words by themselves.

A word is a run of letters ("three-hour" is two, "it's" is "it" and "s"); it is swapped only when it is a
single whole-word entry of the vocabulary (other words, numbers, punctuation and spacing stay); each such word
is swapped with probability `rate` for one of its `NEIGHBOURS` nearest words, drawn uniformly. The copies depend on the texts, the teacher and `seed` only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from minilm_deploy.data.types import Example

WORD = re.compile(r"[^\W\d_]+")  # a run of letters, any script
NEIGHBOURS = 10  # candidate words per swappable word (TinyBERT draws from 15 masked-LM candidates)


def whole_words(tokenizer) -> dict[int, str]:
    """Vocabulary id → word, for the entries that are an alphabetic word on their own: the word decodes from
    the entry alone, and tokenizing the word gives back that one entry (WordPiece "##" pieces, sentencepiece
    fragments and special tokens are left out)."""
    special = set(tokenizer.all_special_ids)
    ids = [i for i in range(len(tokenizer)) if i not in special]
    words = [tokenizer.decode([i]).strip() for i in ids]
    keep = [(i, w) for i, w in zip(ids, words, strict=True) if len(w) > 1 and w.isalpha()]
    encoded = tokenizer([w for _, w in keep], add_special_tokens=False)["input_ids"]
    return {i: w for (i, w), back in zip(keep, encoded, strict=True) if back == [i]}


def neighbour_table(tokenizer, embeddings: torch.Tensor, texts: Sequence[str], k: int = NEIGHBOURS,
                    chunk: int = 1024) -> dict[str, list[str]]:
    """word (as written in `texts`: "Bad" and "bad" are two keys) → its `k` nearest whole words by
    the cosine of their rows in `embeddings` (V, H), nearest first, the word itself in any case excluded ("Film"
    is no swap for "film" in a cased vocabulary); for every word of `texts` that is a whole-word entry."""
    vocab = whole_words(tokenizer)
    seen = sorted({w for text in texts for w in WORD.findall(text)})
    if not seen or len(vocab) <= k:
        return {}
    encoded = tokenizer(seen, add_special_tokens=False)["input_ids"]
    queries = {w: ids[0] for w, ids in zip(seen, encoded, strict=True) if len(ids) == 1 and ids[0] in vocab}
    if not queries:
        return {}
    candidate_ids = torch.tensor(sorted(vocab))  # (C,)
    unit = torch.nn.functional.normalize(embeddings.detach().float(), dim=-1)  # (V, H)
    candidates = unit[candidate_ids]  # (C, H)
    words = list(queries)
    table: dict[str, list[str]] = {}
    for start in range(0, len(words), chunk):
        part = words[start : start + chunk]
        ids = torch.tensor([queries[w] for w in part])  # (Q,)
        sims = unit[ids] @ candidates.T  # (Q, C)
        sims[candidate_ids[None, :] == ids[:, None]] = -2.0  # never the word itself
        nearest = sims.topk(min(2 * k, len(vocab)), dim=-1).indices  # (Q, 2k): room for the word's other cases
        for word, row in zip(part, nearest.tolist(), strict=True):
            others = [w for w in (vocab[int(candidate_ids[j])] for j in row) if w.lower() != word.lower()]
            table[word] = others[:k]
    return table


def swap_words(text: str, table: dict[str, list[str]], rate: float, rng: np.random.Generator) -> str:
    """`text` with each word that `table` knows swapped, with probability `rate`, for one of its neighbours
    (a capitalised word's neighbour is capitalised)."""

    def swap(match: re.Match[str]) -> str:
        word = match.group()
        choices = table.get(word)
        if not choices or rng.random() >= rate:
            return word
        new = choices[int(rng.integers(len(choices)))]
        return new.capitalize() if word[0].isupper() else new

    return WORD.sub(swap, text)


def augment(rows: Sequence[Example], table: dict[str, list[str]], copies: int, rate: float,
            seed: int = 0) -> tuple[Example, ...]:
    """`copies` swapped copies of each row, row by row (row 0's copies first), both texts of a pair swapped;
    a copy keeps its row's label (the caller decides whether it counts)."""
    rng = np.random.default_rng(seed)
    return tuple(
        replace(row, text=swap_words(row.text, table, rate, rng),
                text_pair=None if row.text_pair is None else swap_words(row.text_pair, table, rate, rng))
        for row in rows for _ in range(copies)
    )
