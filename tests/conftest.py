"""Shared fixtures: a tiny random BERT with a tiny WordPiece tokenizer, and an isolated zoo cache.

`tiny_bert_dir` is a standard Hugging Face folder (config.json, model.safetensors, tokenizer.json,
tokenizer_config.json, special_tokens_map.json, vocab.txt) that `AutoModel.from_pretrained` and
`AutoTokenizer.from_pretrained` load offline. `make_tiny_bert(path, **config)` builds variants
(more layers, other heads, a classification head via `architecture="BertForSequenceClassification"`).
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # torch is imported where it is used: collecting tests stays light
    import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "the a an is are was be of and to in it this that movie film good bad great not very "
    "i you he she we they my your what how why who fresh rotten plot story love hate fun "
    "hello world sentence text model small test"
).split()

TINY_BERT = dict(  # a few tens of thousands of parameters: fast on any CPU
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
    max_position_embeddings=64, type_vocab_size=2,
)


def tiny_vocab() -> list[str]:
    """Special tokens, whole words, then single characters and their `##` continuations, so any
    lowercase ASCII text tokenizes without [UNK]."""
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    return [*SPECIAL, *WORDS, *chars, *(f"##{c}" for c in chars)]


def save_tiny_tokenizer(folder: Path) -> None:
    """tokenizer.json (built with `tokenizers`, as BERT's WordPiece) plus the config files, written
    directly so the folder is the same under transformers 4.57 and 5.x."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(tiny_vocab())}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.add_special_tokens(SPECIAL)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    special = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 64, **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")


def make_tiny_bert(folder: Path, architecture: str = "BertModel", seed: int = 0, **config: object) -> Path:
    """Save a tiny random BERT (`architecture` from transformers) plus its tokenizer into `folder`."""
    import torch
    import transformers

    folder = Path(folder)
    save_tiny_tokenizer(folder)
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=len(tiny_vocab()), **{**TINY_BERT, **config})
    model = getattr(transformers, architecture)(cfg).eval()
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny BERT folder per test session: read it, never write into it."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def tiny_bert_dir(tmp_path: Path) -> Path:
    """A fresh tiny BERT folder for one test (safe to modify)."""
    return make_tiny_bert(tmp_path / "tiny-bert")


@pytest.fixture
def tiny_bert_factory(tmp_path: Path) -> Callable[..., Path]:
    """`factory(name="x", **config)` → a tiny BERT folder under tmp_path with config overrides."""

    def factory(name: str = "tiny", **config: object) -> Path:
        return make_tiny_bert(tmp_path / name, **config)

    return factory


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the zoo cache ($MINILM_CACHE) at an empty temporary folder for this test."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MINILM_CACHE", str(cache))
    return cache


@pytest.fixture
def sdpa_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, bool]]:
    """(query dtype, query requires grad) of every `scaled_dot_product_attention` call in this test; the real
    kernel still runs (and its backward in the same dtype)."""
    import torch

    calls: list[tuple[object, bool]] = []
    real = torch.nn.functional.scaled_dot_product_attention

    def record(query, *args, **kwargs):
        calls.append((query.dtype, query.requires_grad))
        return real(query, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", record)
    return calls


def _on_dropout_attention(monkeypatch: pytest.MonkeyPatch, note: Callable[[torch.Tensor, float], None]) -> None:
    """Call `note(query, dropout)` at every `models.cpu_training.dropout_attention` call (a CPU training step's
    attention with dropout); the real function still runs."""
    from minilm_deploy.models import cpu_training

    real = cpu_training.dropout_attention

    def record(query, key, value, mask, dropout, scaling):
        note(query, dropout)
        return real(query, key, value, mask, dropout, scaling)

    monkeypatch.setattr(cpu_training, "dropout_attention", record)


@pytest.fixture
def dropout_attention_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, float]]:
    """(query dtype, dropout) of every `models.cpu_training.dropout_attention` call."""
    calls: list[tuple[object, float]] = []
    _on_dropout_attention(monkeypatch, lambda query, dropout: calls.append((query.dtype, dropout)))
    return calls


@pytest.fixture
def heap_kept_at_attention(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """`cpu_heap.kept()` at every `models.cpu_training.dropout_attention` call (in a CPU training step's forward)."""
    from minilm_deploy import cpu_heap

    states: list[bool] = []
    _on_dropout_attention(monkeypatch, lambda query, dropout: states.append(cpu_heap.kept()))
    return states
