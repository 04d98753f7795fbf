"""Hidden-state distillation while fine-tuning (`finetune.distill.hidden`): the loss against hand-computed values,
the layer map, the least-squares start of the projection, the refusals, training that lowers the loss, and an
exact resume with the projection in the checkpoint."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from minilm_deploy.errors import InputError
from minilm_deploy.finetune import api
from minilm_deploy.finetune.hidden import HiddenAlignment, HiddenPlan, layer_pairs
from minilm_deploy.finetune.losses import hidden_relative_error
from minilm_deploy.finetune.model import load_task_model, load_tokenizer
from minilm_deploy.finetune.prepare import prepare
from minilm_deploy.finetune.recipe import TaskDistillRecipe
from minilm_deploy.finetune.trainer import train_seed
from tests.test_finetune_resume import RESUMABLE, assert_a_stopped_seed_resumes_exactly
from tests.test_finetune_train import FAST, synthetic_task

LABELS = {"id2label": {0: "neg", 1: "pos"}, "label2id": {"neg": 0, "pos": 1}}


def test_relative_error_matches_hand_computed_values_and_ignores_padding() -> None:
    student = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]]])  # (1, 3, 2); the last token is padding
    teacher = torch.tensor([[[1.0, 1.0], [1.0, 1.0], [7.0, 7.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # (0² + 1² + 2² + 3²) / (1 + 1 + 1 + 1) = 14 / 4
    assert float(hidden_relative_error(student, teacher, mask)) == pytest.approx(3.5)
    assert float(hidden_relative_error(teacher, teacher, mask)) == 0.0
    assert float(hidden_relative_error(torch.zeros_like(teacher), teacher, mask)) == pytest.approx(1.0)


def test_layer_pairs_follow_the_given_layers_then_the_copied_ones_then_even_spacing() -> None:
    embeddings = ((0, 0),)
    assert layer_pairs(3, 6, given=(1, 4, 6)) == (embeddings + ((1, 1), (2, 4), (3, 6)), "given")
    assert layer_pairs(3, 6, picks=[0, 2, 5]) == (embeddings + ((1, 1), (2, 3), (3, 6)), "copied")
    assert layer_pairs(3, 6) == (embeddings + ((1, 2), (2, 4), (3, 6)), "even")  # TinyBERT: m ↔ m·6/3
    assert layer_pairs(6, 12, picks=[0, 2, 4, 7, 9, 12])[1] == "even"  # picks of another teacher: not used
    assert layer_pairs(4, 6)[0][1:] == ((1, 1), (2, 3), (3, 4), (4, 6))
    for bad in ((1, 2), (1, 2, 7)):
        with pytest.raises(InputError, match="hidden_layers: give 3 teacher layers"):
            layer_pairs(3, 6, given=bad)


def test_hidden_layers_must_increase_from_one_and_the_weight_be_positive() -> None:
    for bad in ({"hidden_layers": (2, 2)}, {"hidden_layers": (0, 3)}, {"hidden": -1.0}):
        with pytest.raises(ValueError, match="distill.hidden"):
            TaskDistillRecipe(**bad)  # type: ignore[arg-type]


def _hidden_recipe(teacher: Path, **distill):
    return replace(FAST, train_limit=64, distill=TaskDistillRecipe(teacher=str(teacher), hidden=1.0, **distill))


def test_the_loss_is_zero_for_a_copy_of_the_teacher_and_positive_for_another_model(tiny_bert_factory) -> None:
    teacher = tiny_bert_factory("teacher", architecture="BertForSequenceClassification", seed=7, **LABELS)
    other = tiny_bert_factory("other", architecture="BertForSequenceClassification", seed=8, **LABELS)
    task = synthetic_task(n_train=64)
    ft = _hidden_recipe(teacher)
    for student, zero in ((teacher, True), (other, False)):
        prep = prepare(task, load_tokenizer(student), ft, teacher, student=student)
        assert prep.hidden is not None and prep.hidden.matched_by == "even"
        assert prep.info["hidden"] == {"pairs": [[0, 0], [1, 1], [2, 2]], "matched_by": "even", "projection": [32, 32]}
        alignment = HiddenAlignment(prep.hidden, torch.device("cpu"))
        model, tokenizer, _ = load_task_model(student)
        batch = tokenizer(["good movie", "the plot is rotten"], padding=True, return_tensors="pt")
        with torch.no_grad():
            states = model(**batch, output_hidden_states=True).hidden_states
        value = float(alignment.loss(states, alignment.teacher_states(dict(batch), bf16=False), batch["attention_mask"]))
        assert (value == 0.0) if zero else value > 0.1, value
        assert list(alignment.state_dict()) == ["fitted"]  # the teacher is not part of what is trained or saved


def test_a_narrower_students_projection_starts_as_the_least_squares_map(tiny_bert_factory) -> None:
    teacher = tiny_bert_factory("teacher", architecture="BertForSequenceClassification", seed=7, **LABELS)
    alignment = HiddenAlignment(HiddenPlan(load_task_model(teacher)[0], ((0, 0), (1, 2)), "given", 3, 5),
                                torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    student = [torch.randn(2, 4, 3, generator=generator) for _ in range(2)]  # (B, T, D_s)
    truth = torch.randn(3, 5, generator=generator)
    teacher_states = [student[0] @ truth, torch.zeros(2, 4, 5), student[1] @ truth]  # indices 0 and 2 are matched
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    assert not bool(alignment.fitted)
    value = float(alignment.loss(tuple(student), tuple(teacher_states), mask).detach())
    assert bool(alignment.fitted) and value < 1e-4, value
    torch.testing.assert_close(alignment.projection.weight, truth.T, atol=1e-2, rtol=1e-2)
    assert set(alignment.state_dict()) == {"fitted", "projection.weight"}


def test_hidden_distillation_needs_one_vocabulary(tiny_bert_factory, tiny_bert_session_dir: Path) -> None:
    teacher = tiny_bert_factory("teacher", architecture="BertForSequenceClassification", seed=7, **LABELS)
    spec = json.loads((teacher / "tokenizer.json").read_text(encoding="utf-8"))
    spec["model"]["vocab"]["movix"] = spec["model"]["vocab"].pop("movie")  # one word differs, same size
    (teacher / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(InputError, match="different vocabularies.*set finetune.distill.hidden to 0"):
        prepare(synthetic_task(n_train=64), load_tokenizer(tiny_bert_session_dir), _hidden_recipe(teacher), teacher,
                student=tiny_bert_session_dir)


def test_a_students_copied_layers_are_its_match_and_training_lowers_the_hidden_loss(tmp_path: Path, tiny_bert_factory) -> None:
    teacher = tiny_bert_factory("teacher", architecture="BertForSequenceClassification", seed=7, num_hidden_layers=4, **LABELS)
    student = tiny_bert_factory("student", seed=3, num_hidden_layers=2, hidden_size=16, intermediate_size=32)
    (student / "run.json").write_text(json.dumps({"init": {"init": "teacher-pruned", "teacher_layers": [0, 3]}}))
    task = synthetic_task(n_train=64)
    ft = replace(_hidden_recipe(teacher), epochs=4)
    prep = prepare(task, load_tokenizer(student), ft, teacher, student=student)
    assert prep.hidden is not None and (prep.hidden.pairs, prep.hidden.matched_by) == (((0, 0), (1, 1), (2, 4)), "copied")

    def hidden_loss(model: torch.nn.Module, alignment: HiddenAlignment) -> float:
        tokenizer = load_tokenizer(student)
        batch = dict(tokenizer([row.text for row in task.splits["train"][:32]], padding=True, return_tensors="pt"))
        model.eval()
        with torch.no_grad():
            states = model(**batch, output_hidden_states=True).hidden_states
            return float(alignment.loss(states, alignment.teacher_states(batch, bf16=False), batch["attention_mask"]))

    trained, run = train_seed(student, prep, ft, 0)
    plain, _ = train_seed(student, replace(prep, hidden=None), ft, 0)
    probe = HiddenAlignment(prep.hidden, torch.device("cpu"))  # a projection fitted afresh to each model's states
    after, without = hidden_loss(trained, probe), hidden_loss(plain, HiddenAlignment(prep.hidden, torch.device("cpu")))
    assert after < 0.8 * without, (after, without)
    assert not any("projection" in name for name in trained.state_dict())  # the projection is not saved in the model
    output = tmp_path / "student-task"
    metrics = api.finetune_model(str(student), ft, output, [0], task=task, distill_teacher=teacher)
    assert metrics["data"]["hidden"]["matched_by"] == "copied" and metrics["data"]["hidden"]["projection"] == [16, 32]
    assert not any("projection" in name for name in load_task_model(output)[0].state_dict())


@pytest.mark.parametrize("checks", [2, 9])
def test_a_stopped_seed_with_hidden_distillation_resumes_exactly(tmp_path: Path, tiny_bert_factory,
                                                                 monkeypatch: pytest.MonkeyPatch, checks: int) -> None:
    teacher = tiny_bert_factory("teacher", architecture="BertForSequenceClassification", seed=7, **LABELS)
    student = tiny_bert_factory("student", seed=3, hidden_size=16, intermediate_size=32)
    ft = replace(RESUMABLE, distill=TaskDistillRecipe(teacher=str(teacher), hidden=1.0))
    prep = prepare(synthetic_task(), load_tokenizer(student), ft, teacher, student=student)
    saved = assert_a_stopped_seed_resumes_exactly(student, prep, ft, tmp_path / "seed-5", monkeypatch, checks)
    assert "hidden.safetensors" in saved  # the projection and its fitted flag
