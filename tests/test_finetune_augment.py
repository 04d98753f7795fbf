"""Augmentation for task distillation: neighbours by the teacher's embeddings, word swaps, the copies in
`prepare` (soft targets only), and the hard loss over labelled rows."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import WORDS, tiny_vocab

from minilm_deploy.data.types import Example, TaskData
from minilm_deploy.errors import InputError
from minilm_deploy.finetune import augment as A
from minilm_deploy.finetune.losses import cross_entropy, soft_kl, task_loss
from minilm_deploy.finetune.model import load_task_model, load_tokenizer
from minilm_deploy.finetune.prepare import prepare
from minilm_deploy.finetune.recipe import FinetuneRecipe, TaskDistillRecipe
from minilm_deploy.finetune.trainer import train_seed

LABELS = {"id2label": {0: "neg", 1: "pos"}, "label2id": {"neg": 0, "pos": 1}}


def embeddings_with(close: dict[str, str]) -> torch.Tensor:
    """(V, 16) random word vectors in which each key of `close` points almost the way of its value."""
    vocab = {t: i for i, t in enumerate(tiny_vocab())}
    table = torch.randn(len(vocab), 16, generator=torch.Generator().manual_seed(0))
    for word, near in close.items():
        table[vocab[word]] = table[vocab[near]] * 3.0 + 0.01 * table[vocab[word]]
    return table


def test_whole_words_are_the_alphabetic_entries_that_tokenize_to_themselves(tiny_bert_session_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_bert_session_dir)
    words = set(A.whole_words(tokenizer).values())
    assert words == {w for w in WORDS if len(w) > 1}  # no [CLS], no single letters, no ##x pieces
    ids = A.whole_words(tokenizer)
    assert all(tokenizer.convert_ids_to_tokens(i) == w for i, w in ids.items())


def test_neighbours_are_nearest_by_cosine_and_never_the_word(tiny_bert_session_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_bert_session_dir)
    table = A.neighbour_table(tokenizer, embeddings_with({"good": "great", "bad": "rotten"}),
                              ["the good movie", "a Bad plot.", "xyzzy 42"], k=3)
    assert table["good"][0] == "great" and table["Bad"][0] == "rotten"  # uncased vocabulary: "Bad" is "bad"
    assert set(table) == {"the", "good", "movie", "Bad", "plot"}  # not "a" (one letter), "xyzzy" (pieces), "42", "."
    assert all(len(v) == 3 and word.lower() not in v for word, v in table.items())


def test_swaps_follow_the_rate_keep_capitals_and_repeat_with_the_seed() -> None:
    rng = np.random.default_rng(0)
    table = {"good": ["great"], "Good": ["great"], "Movie": ["film"]}
    assert A.swap_words("Good Movie, really good-ish", table, 1.0, rng) == "Great Film, really great-ish"
    rows = [Example("good movie", "good", "pos"), Example("bad", None, "neg")]
    copies = A.augment(rows, {"good": ["great"]}, copies=3, rate=0.5, seed=1)
    assert len(copies) == 6 and [c.label for c in copies] == ["pos"] * 3 + ["neg"] * 3
    assert all(c.text_pair in ("good", "great") for c in copies[:3]) and copies[3:] == (rows[1],) * 3
    assert copies == A.augment(rows, {"good": ["great"]}, copies=3, rate=0.5, seed=1)
    swapped = [A.swap_words("good " * 1000, table, 0.25, np.random.default_rng(2)).split().count("great")]
    assert 200 < swapped[0] < 300


def test_hard_loss_counts_the_labelled_rows_only() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True)
    teacher = torch.tensor([[0.0, 1.0]] * 3)
    labels, labelled = torch.tensor([0, 0, 1]), torch.tensor([True, False, True])
    total, parts = task_loss("classification", logits, labels, teacher, 2.0, 0.25, labelled)
    hard = float(cross_entropy(logits[[0, 2]], labels[[0, 2]]).detach())
    assert parts["hard"] == pytest.approx(hard) and parts["soft"] == pytest.approx(float(soft_kl(logits.detach(), teacher, 2.0)))
    assert float(total.detach()) == pytest.approx(0.75 * hard + 0.25 * parts["soft"])
    none, parts = task_loss("classification", logits, labels, teacher, 2.0, 0.25, torch.zeros(3, dtype=torch.bool))
    assert parts["hard"] == 0.0 and float(none.detach()) == pytest.approx(0.25 * parts["soft"])
    none.backward()  # a batch of copies only still has a loss to step on
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def task(n: int = 40) -> TaskData:
    rng = np.random.default_rng(3)
    rows = tuple(Example(f"the {'good' if k else 'bad'} movie is {rng.choice(['fun', 'very', 'not'])}", None,
                         "pos" if k else "neg") for k in rng.integers(0, 2, n))
    return TaskData("cue", "classification", {"train": rows, "dev": rows[:10], "test": rows[:10]}, ("neg", "pos"), "accuracy")


def test_prepare_adds_teacher_labelled_copies_that_train(tiny_bert_session_dir: Path, tiny_bert_factory) -> None:
    teacher = tiny_bert_factory("teacher", architecture="BertForSequenceClassification", seed=5, **LABELS)
    tokenizer = load_tokenizer(tiny_bert_session_dir)
    ft = FinetuneRecipe(task="cue", epochs=1, batch_size=16, max_length=16, bf16=False,  # targets in float32
                        distill=TaskDistillRecipe(teacher=str(teacher), augment=2, augment_rate=1.0))
    prep = prepare(task(), tokenizer, ft, teacher)

    assert len(prep.train) == 120 and prep.info["sizes"] == {"train": 40, "train_augmented": 80, "dev": 10, "test": 10}
    assert prep.labelled is not None and prep.labelled.sum() == 40 and not prep.labelled[40:].any()
    np.testing.assert_array_equal(prep.train.labels[40:], np.repeat(prep.train.labels[:40], 2))
    originals = {tuple(f["input_ids"]) for f in prep.train.features[:40]}
    assert all(tuple(f["input_ids"]) not in originals for f in prep.train.features[40:])  # every word swapped
    model, teacher_tok, _ = load_task_model(teacher)  # the copies' targets are the teacher's logits on the copies
    with torch.no_grad():
        copy = prep.train.features[40]
        expected = model(input_ids=torch.tensor([copy["input_ids"]])).logits[0].numpy()
    np.testing.assert_allclose(prep.teacher_logits[40], expected, atol=1e-5)
    run = train_seed(tiny_bert_session_dir, prep, ft, 0)[1]
    assert run.history[0]["step"] == 8 and np.isfinite(run.history[0]["train_loss"])  # 120 rows / 16


def test_augment_is_off_by_default_and_rejects_bad_settings(tiny_bert_session_dir: Path, tiny_bert_factory) -> None:
    teacher = tiny_bert_factory("teacher", architecture="BertForSequenceClassification", seed=5, **LABELS)
    ft = FinetuneRecipe(task="cue", distill=TaskDistillRecipe(teacher=str(teacher)))
    prep = prepare(task(), load_tokenizer(tiny_bert_session_dir), ft, teacher)
    assert len(prep.train) == 40 and prep.labelled is None and "train_augmented" not in prep.info["sizes"]
    for bad in ({"augment": -1}, {"augment_rate": 0.0}, {"augment_rate": 1.5}):
        with pytest.raises(ValueError, match="augment"):
            TaskDistillRecipe(**bad)
    numbers = TaskData("n", "classification", {"train": (Example("1 2", None, "neg"), Example("3", None, "pos")),
                                               "dev": (Example("4", None, "neg"),)}, ("neg", "pos"), "accuracy")
    with pytest.raises(InputError, match=r"nothing can be swapped; set finetune\.distill\.augment to 0"):
        prepare(numbers, load_tokenizer(tiny_bert_session_dir),
                replace(ft, eval_splits=(), distill=TaskDistillRecipe(teacher=str(teacher), augment=1)), teacher)


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["zoo:all-minilm-l6-v2", "zoo:multilingual-e5-small"])
def test_real_teachers_give_synonyms_as_neighbours(spec: str) -> None:
    from transformers import AutoModel, AutoTokenizer

    from minilm_deploy.sources import resolve_model

    folder = resolve_model(spec)  # WordPiece (uncased) and sentencepiece (cased, 250k pieces)
    model, tokenizer = AutoModel.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    table = A.neighbour_table(tokenizer, model.get_input_embeddings().weight, ["A good movie, a great film."])
    assert "great" in table["good"] and "films" in table["film"] and "movies" in table["movie"]
    assert all(w.lower() != word.lower() for word, near in table.items() for w in near)  # no case variants
    assert "A" not in table and "a" not in table  # one letter: never swapped
