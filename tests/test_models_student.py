"""Student construction and initialisation; the adapter table."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from minilm_deploy.distill.recipe import StudentSpec
from minilm_deploy.errors import InputError
from minilm_deploy.models.adapters import ADAPTERS, adapter_for, attention_shape, resolve_layer
from minilm_deploy.models.student import build_student, teacher_layer_picks
from minilm_deploy.models.teacher import load_encoder


def test_student_shape_defaults_and_save_load(tiny_bert_factory, tmp_path: Path) -> None:
    teacher = load_encoder(tiny_bert_factory("t", num_hidden_layers=4))
    student, _ = build_student(teacher.model, StudentSpec(layers=2, hidden=16), seed=0)
    assert attention_shape(student.config) == (2, 16, 4)  # heads default to the teacher's
    assert student.config.intermediate_size == 64  # 4 × hidden
    assert student.config.vocab_size == teacher.model.config.vocab_size
    student.save_pretrained(tmp_path / "s")
    teacher.tokenizer.save_pretrained(tmp_path / "s")
    loaded = AutoModel.from_pretrained(tmp_path / "s")
    tok = AutoTokenizer.from_pretrained(tmp_path / "s")
    ids = tok(["hello world"], return_tensors="pt")
    torch.testing.assert_close(loaded(**ids).last_hidden_state, student.eval()(**ids).last_hidden_state)


def test_random_init_is_seeded(tiny_bert_session_dir: Path) -> None:
    teacher = load_encoder(tiny_bert_session_dir)
    a, _ = build_student(teacher.model, StudentSpec(layers=1, hidden=16, heads=2, ffn=24, dropout=0.0), seed=3)
    b, _ = build_student(teacher.model, StudentSpec(layers=1, hidden=16, heads=2, ffn=24, dropout=0.0), seed=3)
    c, _ = build_student(teacher.model, StudentSpec(layers=1, hidden=16, heads=2, ffn=24, dropout=0.0), seed=4)
    assert a.config.intermediate_size == 24 and a.config.hidden_dropout_prob == 0.0
    wa, wb, wc = (m.embeddings.word_embeddings.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_default_picks_keep_the_first_and_last_teacher_layer() -> None:
    assert teacher_layer_picks(6, 3) == [0, 2, 5]
    assert teacher_layer_picks(6, 4) == [0, 2, 3, 5]
    assert teacher_layer_picks(12, 6) == [0, 2, 4, 7, 9, 11]
    assert teacher_layer_picks(4, 4) == [0, 1, 2, 3]
    assert teacher_layer_picks(6, 2) == [0, 5]
    assert teacher_layer_picks(6, 1) == [5]  # one layer: the one a last-layer loss aims at
    for teacher in range(1, 25):
        for student in range(2, teacher + 1):
            picks = teacher_layer_picks(teacher, student)
            assert picks[0] == 0 and picks[-1] == teacher - 1 and len(set(picks)) == student
            assert picks == sorted(picks)


def _assert_copied(student, teacher, picks: list[int]) -> None:
    t_layers, s_layers = teacher.encoder.layer, student.encoder.layer
    for s_i, t_i in enumerate(picks):
        for (name, sp), (_, tp) in zip(s_layers[s_i].named_parameters(), t_layers[t_i].named_parameters(), strict=True):
            assert torch.equal(sp, tp), (s_i, t_i, name)
    assert torch.equal(student.embeddings.word_embeddings.weight, teacher.embeddings.word_embeddings.weight)


def test_teacher_layers_init_copies_the_picked_layers(tiny_bert_factory) -> None:
    teacher = load_encoder(tiny_bert_factory("t", num_hidden_layers=4))
    default, _ = build_student(teacher.model, StudentSpec(layers=2, hidden=32, init="teacher-layers"), seed=0)
    _assert_copied(default, teacher.model, [0, 3])
    given, _ = build_student(teacher.model, StudentSpec(layers=2, hidden=32, init="teacher-layers", init_layers=(1, 2)), 0)
    _assert_copied(given, teacher.model, [1, 2])


def test_init_layers_are_validated(tiny_bert_factory) -> None:
    teacher = load_encoder(tiny_bert_factory("t", num_hidden_layers=4))
    with pytest.raises(InputError, match=r"teacher's layers are 0\.\.3"):
        build_student(teacher.model, StudentSpec(layers=2, hidden=32, init="teacher-layers", init_layers=(0, 4)), 0)
    with pytest.raises(InputError, match="increasing order"):
        build_student(teacher.model, StudentSpec(layers=2, hidden=32, init="teacher-layers", init_layers=(2, 1)), 0)
    with pytest.raises(InputError, match="increasing order"):
        build_student(teacher.model, StudentSpec(layers=2, hidden=32, init="teacher-layers", init_layers=(1, 1)), 0)
    with pytest.raises(ValueError, match="one teacher layer per student layer"):
        StudentSpec(layers=2, hidden=32, init="teacher-layers", init_layers=(0, 1, 2))
    with pytest.raises(ValueError, match="needs init: teacher-layers"):
        StudentSpec(layers=2, hidden=32, init_layers=(0, 1))


def test_teacher_layers_init_needs_equal_widths(tiny_bert_session_dir: Path) -> None:
    teacher = load_encoder(tiny_bert_session_dir)
    with pytest.raises(InputError, match="use init: random"):
        build_student(teacher.model, StudentSpec(layers=1, hidden=16, init="teacher-layers"), seed=0)
    with pytest.raises(InputError, match="at most the teacher's 2 layers"):
        build_student(teacher.model, StudentSpec(layers=3, hidden=32, init="teacher-layers"), seed=0)


def test_heads_must_divide_hidden(tiny_bert_session_dir: Path) -> None:
    teacher = load_encoder(tiny_bert_session_dir)  # 4 heads
    with pytest.raises(InputError, match="not divisible by 4 heads"):
        build_student(teacher.model, StudentSpec(layers=1, hidden=18), seed=0)
    with pytest.raises(ValueError, match="must divide"):
        StudentSpec(layers=1, hidden=18, heads=4)


def test_adapter_table_and_layer_numbers() -> None:
    assert {"bert", "xlm-roberta", "mpnet", "distilbert", "roberta"} <= set(ADAPTERS)
    xlmr, bert = adapter_for("xlm-roberta"), adapter_for("bert")
    assert (xlmr.layers, xlmr.query, xlmr.key, xlmr.value) == (bert.layers, bert.query, bert.key, bert.value)
    assert (xlmr.position_offset, bert.position_offset) == (2, 0)  # RoBERTa-style positions start after padding
    assert adapter_for("mpnet").query.endswith("attn.q")
    with pytest.raises(InputError, match="no attention adapter"):
        adapter_for("gpt2")
    assert resolve_layer(-1, 6, what="x") == 5 and resolve_layer(1, 6, what="x") == 0 and resolve_layer(6, 6, what="x") == 5
    with pytest.raises(InputError, match="x=7"):
        resolve_layer(7, 6, what="x")
    with pytest.raises(InputError):
        resolve_layer(-7, 6, what="x")


def test_load_encoder_refuses_unknown_architecture(tmp_path: Path) -> None:
    import transformers

    folder = tmp_path / "gpt"
    transformers.GPT2Model(transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=50)).save_pretrained(folder)
    with pytest.raises(InputError, match="no attention adapter"):
        load_encoder(folder)
