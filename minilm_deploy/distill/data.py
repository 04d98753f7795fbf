"""Raw text → fixed-length token blocks, and a deterministic, resumable order over them.

Documents are tokenized without special tokens, joined with the separator token and cut into
blocks of `seq_len`: `[CLS] t1 … t(T-2) [SEP]` (or `<s> … </s>`). Only the last block may be
padded. No masking is needed: MiniLM distils attention, not a masked-LM head.

The order is a function of (seed, sample index) alone: epoch e is a seeded permutation of the
blocks, and sample s of the run is block perm_e[s mod N]. Resuming only needs the step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor

from minilm_deploy.errors import InputError

MIN_LAST_BLOCK = 8  # a shorter tail is dropped rather than padded


@dataclass
class Blocks:
    input_ids: Tensor  # (N, T) int64
    attention_mask: Tensor  # (N, T) int64, 1 for real tokens

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())


def _frame_ids(tokenizer) -> tuple[int, int, int]:
    """(start, separator, pad) token ids: [CLS]/[SEP]/[PAD] for BERT, <s>/</s>/<pad> for XLM-R."""
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else sep
    if start is None or sep is None:
        raise InputError("the tokenizer has no [CLS]/<s> or [SEP]/</s> token; distillation needs both")
    return int(start), int(sep), int(pad)


def shuffled_documents(texts: list[str], seed: int, limit: int | None = None) -> list[str]:
    docs = [t for t in (s.strip() for s in texts) if t]
    random.Random(seed).shuffle(docs)
    return docs[:limit] if limit else docs


def pack_blocks(
    texts: list[str], tokenizer, seq_len: int, *, max_tokens: int | None = None, batch_docs: int = 256
) -> Blocks:
    """Tokenize `texts` in order (stopping once `max_tokens` body tokens are collected) and pack."""
    start, sep, pad = _frame_ids(tokenizer)
    stream: list[int] = []
    for i in range(0, len(texts), batch_docs):
        encoded = tokenizer(texts[i : i + batch_docs], add_special_tokens=False, verbose=False)["input_ids"]
        for ids in encoded:
            if ids:
                stream.extend(ids)
                stream.append(sep)
        if max_tokens is not None and len(stream) >= max_tokens:
            break
    body = seq_len - 2
    rows = [stream[j : j + body] for j in range(0, len(stream), body)]
    rows = [r for r in rows if len(r) >= MIN_LAST_BLOCK]
    if not rows:
        raise InputError("the corpus is empty after tokenization; give a corpus with text in it")
    ids = torch.full((len(rows), seq_len), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), seq_len), dtype=torch.long)
    for n, row in enumerate(rows):
        framed = [start, *row] if row[-1] == sep else [start, *row, sep]  # at most seq_len
        ids[n, : len(framed)] = torch.tensor(framed)
        mask[n, : len(framed)] = 1
    return Blocks(ids, mask)


class BlockOrder:
    """Sample index → block index, as seeded per-epoch permutations."""

    def __init__(self, count: int, seed: int) -> None:
        self.count = count
        self.seed = seed
        self._perms: dict[int, Tensor] = {}

    def _perm(self, epoch: int) -> Tensor:
        if epoch not in self._perms:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(self.count, generator=generator)}
        return self._perms[epoch]

    def indices(self, start: int, stop: int) -> Tensor:
        """Block indices of samples start..stop-1 of the run."""
        out = [int(self._perm(s // self.count)[s % self.count]) for s in range(start, stop)]
        return torch.tensor(out, dtype=torch.long)


def batch_slice(blocks: Blocks, index: Tensor) -> tuple[Tensor, Tensor]:
    return blocks.input_ids[index], blocks.attention_mask[index]


def mix_blocks(pieces: list[tuple[str, Blocks, float]], samples: int) -> tuple[Blocks, list[dict]]:
    """Blocks of several sources, each repeated (cyclically) or cut to its share of `samples`.

    pieces: (source name, its blocks, its weight); the weights are normalised to shares. A source
    with fewer blocks than its share is repeated, so one pass over the mixture spends the budget
    in the given proportions. Returns the mixture and, per source, what it contributed.
    """
    total = sum(weight for _, _, weight in pieces)
    parts, report = [], []
    for name, blocks, weight in pieces:
        share = weight / total
        want = max(1, round(share * samples))
        index = torch.arange(want) % len(blocks)  # (want,): cycles through the source's blocks
        parts.append((blocks.input_ids[index], blocks.attention_mask[index]))
        report.append({"source": name, "share": round(share, 4), "blocks": want, "distinct_blocks": min(want, len(blocks)),
                       "repeated": want > len(blocks)})
    width = max(ids.shape[1] for ids, _ in parts)
    if any(ids.shape[1] != width for ids, _ in parts):
        raise ValueError("every source must be packed to the same block length")
    return Blocks(torch.cat([ids for ids, _ in parts]), torch.cat([m for _, m in parts])), report
