"""Vocabulary pruning: keep the tokens a corpus uses (plus special tokens), shrink the
embedding matrix and the tokenizer together.

A multilingual teacher spends most of its parameters on a 250k-piece embedding table; a student
for a few languages needs a fraction of it. Kept pieces are renumbered in their old order; on
text whose pieces were all kept the pruned tokenizer splits exactly as before (WordPiece's
longest match and Unigram's best segmentation only ever used kept pieces), so ids map back
through `keep` and the model's outputs are unchanged.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from minilm_deploy.errors import InputError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

PRUNABLE = ("WordPiece", "Unigram")
_CONFIG_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id")


def token_counts(tokenizer, texts: list[str], batch: int = 512) -> Counter[int]:
    counts: Counter[int] = Counter()
    for i in range(0, len(texts), batch):
        for ids in tokenizer(texts[i : i + batch], add_special_tokens=False, verbose=False)["input_ids"]:
            counts.update(ids)
    return counts


def kept_ids(tokenizer, texts: list[str], rows: int, min_count: int = 1) -> list[int]:
    """Sorted old ids to keep: used at least `min_count` times, every special/added token, and unk."""
    counts = token_counts(tokenizer, texts)
    keep = {i for i, c in counts.items() if c >= min_count}
    keep |= set(tokenizer.all_special_ids)
    keep |= {int(i) for i in getattr(tokenizer, "added_tokens_decoder", {})}
    return sorted(i for i in keep if 0 <= i < rows)


def _remap_processor(node: Any, new_id: dict[int, int]) -> Any:
    """Renumber token ids inside a post-processor description (Template, Bert, Roberta, Sequence)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "ids" and isinstance(value, list):
                out[key] = [new_id[int(v)] for v in value]
            elif key in ("sep", "cls") and isinstance(value, list) and len(value) == 2:
                out[key] = [value[0], new_id[int(value[1])]]
            else:
                out[key] = _remap_processor(value, new_id)
        return out
    if isinstance(node, list):
        return [_remap_processor(v, new_id) for v in node]
    return node


def prune_tokenizer_json(data: dict[str, Any], keep: list[int]) -> dict[str, Any]:
    """A `tokenizer.json` document restricted to `keep` (old ids), renumbered 0..len(keep)-1."""
    model = dict(data["model"])
    kind = model.get("type")
    if kind not in PRUNABLE:
        raise InputError(f"vocabulary pruning supports {' and '.join(PRUNABLE)} tokenizers, not {kind}; set vocab.prune: false")
    new_id = {old: new for new, old in enumerate(keep)}
    if kind == "WordPiece":
        by_id = {i: tok for tok, i in model["vocab"].items()}
        model["vocab"] = {by_id[old]: new for new, old in enumerate(keep)}
    else:  # Unigram: a list of [piece, score] indexed by id
        model["vocab"] = [model["vocab"][old] for old in keep]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[int(model["unk_id"])]
    out = dict(data, model=model)
    out["added_tokens"] = [dict(t, id=new_id[int(t["id"])]) for t in data.get("added_tokens", []) if int(t["id"]) in new_id]
    out["post_processor"] = _remap_processor(data.get("post_processor"), new_id)
    if isinstance(data.get("padding"), dict) and "pad_id" in data["padding"]:
        out["padding"] = dict(data["padding"], pad_id=new_id.get(int(data["padding"]["pad_id"]), 0))
    return out


def prune_tokenizer(tokenizer, keep: list[int]):
    """The same tokenizer class and settings, with only the kept pieces."""
    from transformers import AutoTokenizer

    data = json.loads(tokenizer.backend_tokenizer.to_str())
    pruned = prune_tokenizer_json(data, keep)
    new_id = {old: new for new, old in enumerate(keep)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tokenizer.save_pretrained(str(folder))
        for stale in ("vocab.txt", "sentencepiece.bpe.model", "spiece.model", "vocab.json", "merges.txt", "added_tokens.json"):
            (folder / stale).unlink(missing_ok=True)  # slow-tokenizer files would describe the old vocabulary
        (folder / "tokenizer.json").write_text(json.dumps(pruned, ensure_ascii=False), encoding="utf-8")
        config_path = folder / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if isinstance(config.get("added_tokens_decoder"), dict):
            config["added_tokens_decoder"] = {
                str(new_id[int(k)]): v for k, v in config["added_tokens_decoder"].items() if int(k) in new_id
            }
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
        return AutoTokenizer.from_pretrained(str(folder))


def prune_embeddings(model: PreTrainedModel, keep: list[int]) -> None:
    """Keep only rows `keep` of the input embedding (in place), and renumber the config's token ids."""
    old = model.get_input_embeddings()
    assert isinstance(old, nn.Embedding)
    new_id = {o: n for n, o in enumerate(keep)}
    pad = new_id.get(old.padding_idx) if old.padding_idx is not None else None
    new = nn.Embedding(len(keep), old.embedding_dim, padding_idx=pad)
    with torch.no_grad():
        new.weight.copy_(old.weight[torch.tensor(keep, dtype=torch.long)])
    new.weight.requires_grad_(old.weight.requires_grad)
    model.set_input_embeddings(new)
    model.config.vocab_size = len(keep)
    for name in _CONFIG_IDS:
        value = getattr(model.config, name, None)
        if isinstance(value, int):
            setattr(model.config, name, new_id.get(value, 0))


def prune_encoder(encoder, texts: list[str], *, min_count: int = 1):
    """Prune an `Encoder` (model and tokenizer together) to the pieces `texts` use.

    Returns (the pruned encoder, a report with embedding parameters before and after).
    """
    from minilm_deploy.models.teacher import Encoder, embedding_parameters

    rows = encoder.model.get_input_embeddings().weight.shape[0]
    before, vocab_before = embedding_parameters(encoder.model), len(encoder.tokenizer)
    keep = kept_ids(encoder.tokenizer, texts, rows, min_count)
    tokenizer = prune_tokenizer(encoder.tokenizer, keep)
    prune_embeddings(encoder.model, keep)
    report = {
        "documents": len(texts), "min_count": min_count,
        "vocab_before": vocab_before, "vocab_after": len(tokenizer),
        "embedding_parameters_before": before, "embedding_parameters_after": embedding_parameters(encoder.model),
    }
    return Encoder(encoder.model, tokenizer, encoder.source, encoder.path), report
