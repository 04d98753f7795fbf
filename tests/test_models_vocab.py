"""Vocabulary pruning: same pieces and same outputs on kept text, smaller embeddings; WordPiece and Unigram."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from transformers import AutoModel, AutoTokenizer

from minilm_deploy.errors import InputError
from minilm_deploy.models.teacher import load_encoder
from minilm_deploy.models.vocab import prune_encoder, prune_tokenizer_json

KEPT_TEXT = ["the movie was good", "a bad film, not fun", "hello world: 42 tests"]


def _check_round_trip(original, pruned, keep_map: list[int], texts: list[str]) -> None:
    for text in texts:
        old = original.tokenizer(text)["input_ids"]
        new = pruned.tokenizer(text)["input_ids"]
        assert [keep_map[i] for i in new] == old, text
        assert pruned.tokenizer.decode(new) == original.tokenizer.decode(old)
    old_batch = original.tokenizer(texts, padding=True, return_tensors="pt")
    new_batch = pruned.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        a = original.model(**old_batch).last_hidden_state
        b = pruned.model(**new_batch).last_hidden_state
    torch.testing.assert_close(a, b)


def _keep_map(original, pruned) -> list[int]:
    """New id → old id, through the pieces' strings."""
    old_vocab = original.tokenizer.get_vocab()
    new_vocab = pruned.tokenizer.get_vocab()
    mapping = [0] * len(new_vocab)
    for token, new in new_vocab.items():
        mapping[new] = old_vocab[token]
    return mapping


def test_wordpiece_pruning_round_trip(tiny_bert_dir: Path, tmp_path: Path) -> None:
    original = load_encoder(tiny_bert_dir)
    pruned, report = prune_encoder(load_encoder(tiny_bert_dir), KEPT_TEXT)
    assert report["vocab_after"] < report["vocab_before"]
    assert report["embedding_parameters_after"] == report["vocab_after"] * 32 < report["embedding_parameters_before"]
    keep = _keep_map(original, pruned)
    assert keep == sorted(keep)  # kept pieces keep their order
    assert set(original.tokenizer.all_special_ids) <= set(keep)
    _check_round_trip(original, pruned, keep, KEPT_TEXT)
    assert pruned.model.config.vocab_size == len(pruned.tokenizer)
    # Saved together, they load as a standard folder and still agree.
    pruned.model.save_pretrained(tmp_path / "p")
    pruned.tokenizer.save_pretrained(tmp_path / "p")
    reloaded_tok = AutoTokenizer.from_pretrained(tmp_path / "p")
    reloaded = AutoModel.from_pretrained(tmp_path / "p")
    assert reloaded_tok("the movie")["input_ids"] == pruned.tokenizer("the movie")["input_ids"]
    assert reloaded.get_input_embeddings().weight.shape[0] == len(keep)


def _unigram_folder(folder: Path) -> Path:
    """A tiny XLM-R-style model: Unigram pieces (SentencePiece-like), <s> </s> framing."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram

    words = "▁the ▁movie ▁was ▁good ▁bad ▁film ▁a ▁not ▁fun ▁hello ▁world ▁test s , : ▁".split()
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    vocab = [(t, 0.0) for t in specials] + [(w, -2.0 - i * 0.01) for i, w in enumerate(words)]
    vocab += [(c, -8.0) for c in chars] + [("▁" + c, -8.5) for c in chars] + [("<mask>", 0.0)]
    tok = Tokenizer(Unigram(vocab, unk_id=3))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
    )
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=64, pad_token_id=1)
    transformers.BertModel(config).save_pretrained(folder)
    return folder


def test_unigram_pruning_round_trip(tmp_path: Path) -> None:
    folder = _unigram_folder(tmp_path / "u")
    original = load_encoder(folder)
    pruned, report = prune_encoder(load_encoder(folder), KEPT_TEXT)
    assert report["vocab_after"] < report["vocab_before"]
    keep = _keep_map(original, pruned)
    _check_round_trip(original, pruned, keep, KEPT_TEXT)
    data = json.loads(pruned.tokenizer.backend_tokenizer.to_str())
    assert data["model"]["vocab"][data["model"]["unk_id"]][0] == "<unk>"
    assert pruned.model.config.pad_token_id == pruned.tokenizer.pad_token_id


def test_bpe_is_refused() -> None:
    with pytest.raises(InputError, match="WordPiece and Unigram"):
        prune_tokenizer_json({"model": {"type": "BPE", "vocab": {}, "merges": []}}, [0])


@pytest.mark.slow
def test_multilingual_e5_pruned_on_a_multilingual_sample() -> None:
    """The real multilingual-e5-small: 250k pieces down to the ones a few languages use, same outputs."""
    from minilm_deploy.sources import read_corpus

    texts = read_corpus("zoo:corpus-multilingual")[:400]
    original = load_encoder("zoo:multilingual-e5-small")
    pruned, report = prune_encoder(load_encoder("zoo:multilingual-e5-small"), texts)
    assert report["embedding_parameters_after"] < report["embedding_parameters_before"] / 10
    keep = _keep_map(original, pruned)
    _check_round_trip(original, pruned, keep, texts[:8])


def test_distill_with_vocab_pruning_writes_a_consistent_smaller_student(tmp_path: Path, tiny_bert_dir: Path) -> None:
    import yaml

    from minilm_deploy.cli.main import main

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(KEPT_TEXT * 20) + "\n", encoding="utf-8")
    recipe = {"name": "p", "teacher": str(tiny_bert_dir), "output_dir": str(tmp_path / "run"), "distill": {
        "corpus": str(corpus), "student": {"layers": 1, "hidden": 16}, "vocab": {"prune": True},
        "train": {"steps": 3, "batch_size": 4, "max_length": 16}}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["distill", str(tmp_path / "r.yaml")]) == 0
    out = tmp_path / "run" / "student"
    run = json.loads((out / "run.json").read_text())
    vocab = run["vocab"]
    assert vocab["vocab_after"] < vocab["vocab_before"] and vocab["embedding_parameters_after"] < vocab["embedding_parameters_before"]
    tok, model = AutoTokenizer.from_pretrained(out), AutoModel.from_pretrained(out)
    assert len(tok) == model.config.vocab_size == vocab["vocab_after"]
    assert run["student"]["embedding_parameters"] == vocab["vocab_after"] * 16
    original = AutoTokenizer.from_pretrained(tiny_bert_dir)
    for text in KEPT_TEXT:
        assert tok.convert_ids_to_tokens(tok(text)["input_ids"]) == original.convert_ids_to_tokens(original(text)["input_ids"])


def test_a_layer_copy_of_a_pruned_teacher_gives_the_teachers_outputs_on_kept_text(tmp_path: Path, tiny_bert_dir: Path) -> None:
    """Pruning and the layer copy together (the multilingual preset does both): a student that copies every
    layer of the pruned teacher, undistilled, is the original teacher on the corpus's text, in fewer pieces."""
    import yaml

    from minilm_deploy.cli.main import main

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(KEPT_TEXT * 20) + "\n", encoding="utf-8")
    recipe = {"name": "p", "teacher": str(tiny_bert_dir), "output_dir": str(tmp_path / "run"), "distill": {
        "corpus": str(corpus), "student": {"layers": 2, "hidden": 32, "init": "teacher-layers"}, "vocab": {"prune": True},
        "train": {"steps": 0, "batch_size": 4, "max_length": 16}}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["distill", str(tmp_path / "r.yaml")]) == 0
    original, student = load_encoder(str(tiny_bert_dir)), load_encoder(str(tmp_path / "run" / "student"))
    assert len(student.tokenizer) < len(original.tokenizer)
    _check_round_trip(original, student, _keep_map(original, student), KEPT_TEXT)
