"""Fine-tuning on tiny random BERTs: learning a separable task, the output folder, seeds, steps,
keep-best, dynamic padding, regression, and task distillation lowering the KL to the teacher."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from minilm_deploy.data.types import Example, TaskData
from minilm_deploy.finetune import api
from minilm_deploy.finetune import data as D
from minilm_deploy.finetune.evaluate import predict_logits
from minilm_deploy.finetune.losses import soft_kl, task_loss
from minilm_deploy.finetune.model import load_task_model, load_tokenizer
from minilm_deploy.finetune.prepare import prepare
from minilm_deploy.finetune.recipe import FinetuneRecipe, TaskDistillRecipe
from minilm_deploy.finetune.trainer import train_seed

POS, NEG = "good great love fun fresh".split(), "bad hate rotten not plot".split()
FILLER = "the a movie film story it is this very what how".split()
FAST = FinetuneRecipe(task="synthetic", epochs=6, lr=3e-3, warmup=0.05, batch_size=16, max_length=32)


def mean_kl(student_logits, teacher_logits, temperature: float = 1.0) -> float:
    """Mean KL(teacher ‖ student) per example at `temperature` (no T² factor): how far the student is."""
    return float(soft_kl(student_logits, teacher_logits, temperature)) / temperature**2


def sentences(n: int, seed: int) -> list[tuple[str, str]]:
    """(text, label): filler words plus one cue word that decides the class."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        label = rng.choice(["neg", "pos"])
        words = [rng.choice(FILLER) for _ in range(rng.randint(2, 9))]
        words.insert(rng.randint(0, len(words)), rng.choice(POS if label == "pos" else NEG))
        out.append((" ".join(words), label))
    return out


def synthetic_task(n_train: int = 400, **splits: tuple[Example, ...]) -> TaskData:
    def part(n: int, seed: int) -> tuple[Example, ...]:
        return tuple(Example(text, None, label) for text, label in sentences(n, seed))

    base = {"train": part(n_train, 1), "dev": part(100, 2), "test": part(200, 3)}
    return TaskData("synthetic", "classification", {**base, **splits}, ("neg", "pos"), "accuracy")


def regression_task() -> TaskData:
    def part(n: int, seed: int) -> tuple[Example, ...]:
        rng = random.Random(seed)
        rows = []
        for _ in range(n):
            k = rng.randint(0, 3)
            words = [rng.choice(FILLER) for _ in range(rng.randint(1, 5))] + ["good"] * k
            rng.shuffle(words)
            rows.append(Example(" ".join(words), None, float(k)))
        return tuple(rows)

    return TaskData("count-good", "regression", {"train": part(300, 1), "dev": part(80, 2), "test": part(100, 3)}, (), "pearson")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_bert_session_dir: Path) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ft") / "tiny-task"
    metrics = api.finetune_model(str(tiny_bert_session_dir), FAST, out, [1], task=synthetic_task())
    return out, metrics


def test_tiny_model_learns_separable_task(trained: tuple[Path, dict]) -> None:
    _, metrics = trained
    assert metrics["splits"]["test"]["accuracy"] > 0.95
    assert set(metrics["splits"]["test"]) == {"accuracy", "macro_f1", "mcc", "n"}
    assert metrics["splits"]["test"]["n"] == 200


def test_output_is_a_standard_hf_folder_with_label_map_recipe_and_metrics(trained: tuple[Path, dict]) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from minilm_deploy.recipe import load_recipe

    out, metrics = trained
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "neg", 1: "pos"} and model.config.label2id == {"neg": 0, "pos": 1}
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(["a very good movie", "a bad plot"], padding=True, return_tensors="pt")
    assert model(**batch).logits.argmax(-1).tolist() == [1, 0]
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["splits"] == metrics["splits"] and on_disk["train_seconds"] > 0
    run = json.loads((out / "run.json").read_text())
    assert run["max_length"] == 32 and run["label_names"] == ["neg", "pos"] and run["train_seconds"] > 0
    saved = load_recipe(out / "recipe.yaml")
    assert saved.finetune is not None and saved.finetune.lr == FAST.lr and saved.finetune.epochs == FAST.epochs
    assert not list(out.parent.glob(".*tmp-*"))  # the atomic write left no temporary folder


def test_keep_best_restores_the_best_dev_epoch_and_eval_reproduces_it(trained: tuple[Path, dict]) -> None:
    out, metrics = trained
    run = metrics["runs"][0]
    best = max(h["dev"]["accuracy"] for h in run["history"])
    assert run["best_dev"] == best == metrics["splits"]["dev"]["accuracy"]
    assert len(run["history"]) == FAST.epochs
    again = api.evaluate_model(str(out), synthetic_task(), ["dev", "test"])
    assert again["max_length"] == 32  # from run.json
    for split in ("dev", "test"):
        assert again["splits"][split]["accuracy"] == pytest.approx(metrics["splits"][split]["accuracy"])


def test_seeds_report_mean_and_std_and_a_seed_is_reproducible(tmp_path: Path, tiny_bert_session_dir: Path) -> None:
    ft = replace(FAST, epochs=1, train_limit=64, dev_limit=40)
    task = synthetic_task()
    metrics = api.finetune_model(str(tiny_bert_session_dir), ft, tmp_path / "seeds", [3, 4], task=task)
    acc = metrics["summary"]["test"]["accuracy"]
    values = [r["splits"]["test"]["accuracy"] for r in metrics["runs"]]
    assert acc["values"] == values and acc["mean"] == pytest.approx(np.mean(values))
    assert acc["std"] == pytest.approx(np.std(values, ddof=1))
    assert metrics["best_seed"] in (3, 4) and metrics["data"]["sizes"]["train"] == 64
    tokenizer = load_tokenizer(tiny_bert_session_dir)
    prep = prepare(task, tokenizer, ft)
    first = train_seed(tiny_bert_session_dir, prep, ft, 3)[1]
    second = train_seed(tiny_bert_session_dir, prep, ft, 3)[1]
    assert first.history == second.history  # same seed, same run
    assert first.history == metrics["runs"][0]["history"]


def test_steps_override_epochs(tiny_bert_session_dir: Path) -> None:
    ft = replace(FAST, steps=7, train_limit=64)  # 4 batches per epoch: 2 epochs, the last one cut at step 7
    prep = prepare(synthetic_task(), load_tokenizer(tiny_bert_session_dir), ft)
    run = train_seed(tiny_bert_session_dir, prep, ft, 0)[1]
    assert [h["step"] for h in run.history] == [4, 7]


def test_bf16_fine_tuning_trains_in_autocast_with_a_float32_loss(tiny_bert_session_dir: Path, monkeypatch,
                                                                 sdpa_calls, dropout_attention_calls,
                                                                 heap_kept_at_attention) -> None:
    from minilm_deploy import cpu_heap
    from minilm_deploy.finetune import trainer

    head_dtypes: list[torch.dtype] = []
    loss_dtypes: list[torch.dtype] = []
    real_load, real_loss = trainer.load_for_training, trainer.task_loss

    def load(*args, **kwargs):
        model, info = real_load(*args, **kwargs)
        model.classifier.register_forward_hook(lambda _m, _i, out: head_dtypes.append(out.dtype))
        return model, info

    def loss(kind, logits, *args):
        loss_dtypes.append(logits.dtype)
        return real_loss(kind, logits, *args)

    monkeypatch.setattr(trainer, "load_for_training", load)
    monkeypatch.setattr(trainer, "task_loss", loss)
    ft = replace(FAST, epochs=2, train_limit=64, bf16=True)
    prep = prepare(synthetic_task(), load_tokenizer(tiny_bert_session_dir), ft)
    run = train_seed(tiny_bert_session_dir, prep, ft, 0)[1]
    assert run.bf16 is True and torch.bfloat16 in head_dtypes  # the training forward ran in autocast
    assert dropout_attention_calls and (torch.bfloat16, True) not in sdpa_calls  # its attention did not (float32 with
    assert all(dtype == torch.bfloat16 for dtype, _ in dropout_attention_calls)  # the fast dropout: the model has dropout)
    assert loss_dtypes and all(dtype == torch.float32 for dtype in loss_dtypes)  # the loss did not
    assert heap_kept_at_attention == [cpu_heap.glibc() is not None] * len(dropout_attention_calls)  # freed memory kept
    assert not cpu_heap.kept()  # and given back after
    assert all(np.isfinite(h["train_loss"]) for h in run.history)
    head_dtypes.clear()
    plain = train_seed(tiny_bert_session_dir, prep, replace(ft, bf16=False), 0)[1]
    assert plain.bf16 is False and set(head_dtypes) == {torch.float32}
    auto = train_seed(tiny_bert_session_dir, prep, replace(ft, bf16="auto", steps=1), 0)[1]
    assert auto.bf16 == trainer.bf16_autocast("auto", "cpu")  # on only where the CPU has AMX/AVX512-BF16


def test_frozen_embeddings_stay_fixed(tiny_bert_session_dir: Path) -> None:
    from transformers import AutoModel

    ft = replace(FAST, epochs=1, train_limit=64, freeze_embeddings=True)
    prep = prepare(synthetic_task(), load_tokenizer(tiny_bert_session_dir), ft)
    model = train_seed(tiny_bert_session_dir, prep, ft, 0)[0]
    before = AutoModel.from_pretrained(tiny_bert_session_dir).get_input_embeddings().weight
    after = model.get_input_embeddings().weight
    assert torch.equal(before, after)
    assert not torch.equal(model.bert.encoder.layer[0].attention.self.query.weight,
                           AutoModel.from_pretrained(tiny_bert_session_dir).encoder.layer[0].attention.self.query.weight)


def test_dev_split_is_held_out_of_train_when_absent(tiny_bert_session_dir: Path) -> None:
    task = synthetic_task()
    task = replace(task, splits={k: v for k, v in task.splits.items() if k != "dev"})
    prep = prepare(task, load_tokenizer(tiny_bert_session_dir), replace(FAST, dev_fraction=0.25))
    assert (len(prep.train), len(prep.dev)) == (300, 100)
    assert "held out" in prep.info["dev"]


def test_dynamic_padding_pads_to_the_longest_in_the_batch_and_truncates(tiny_bert_session_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_bert_session_dir)
    rows = [Example("good"), Example("a very good movie indeed"), Example(" ".join(["fun"] * 100))]
    enc = D.encode(tokenizer, rows, np.zeros(3, dtype=np.int64), max_length=16)
    assert [len(f["input_ids"]) for f in enc.features] == [3, len(enc.features[1]["input_ids"]), 16]
    batch = D.collate(enc.features[:2], tokenizer.pad_token_id)
    longest = len(enc.features[1]["input_ids"])
    assert batch["input_ids"].shape == (2, longest) < (2, 16)
    assert batch["attention_mask"][0].tolist() == [1, 1, 1] + [0] * (longest - 3)
    assert batch["input_ids"][0, 3:].eq(tokenizer.pad_token_id).all()


def test_sentence_pairs_get_two_segments(tiny_bert_session_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_bert_session_dir)
    enc = D.encode(tokenizer, [Example("good movie", "bad plot")], np.zeros(1, dtype=np.int64), max_length=16)
    types = enc.features[0]["token_type_ids"]
    assert 0 in types and 1 in types  # [CLS] a [SEP] b [SEP]


def test_regression_head_learns_a_count(tmp_path: Path, tiny_bert_session_dir: Path) -> None:
    from transformers import AutoConfig

    ft = replace(FAST, epochs=8)
    metrics = api.finetune_model(str(tiny_bert_session_dir), ft, tmp_path / "reg", [0], task=regression_task())
    assert metrics["metric"] == "pearson" and set(metrics["splits"]["test"]) == {"pearson", "spearman", "mse", "n"}
    assert metrics["splits"]["test"]["pearson"] > 0.8
    config = AutoConfig.from_pretrained(tmp_path / "reg")
    assert config.problem_type == "regression" and config.num_labels == 1


def test_soft_loss_matches_hand_computed_kl() -> None:
    s, t = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    p_t, p_s = torch.softmax(t / 2, -1), torch.softmax(s / 2, -1)
    expected = float((p_t * (p_t.log() - p_s.log())).sum()) * 4
    assert float(soft_kl(s, t, 2.0)) == pytest.approx(expected)
    total, parts = task_loss("classification", s, torch.tensor([0]), t, 2.0, 0.25)
    assert float(total) == pytest.approx(0.75 * parts["hard"] + 0.25 * parts["soft"])
    assert float(soft_kl(t, t, 3.0)) == pytest.approx(0.0, abs=1e-7)


def test_task_distillation_lowers_kl_to_the_teacher(tmp_path: Path, tiny_bert_session_dir: Path, tiny_bert_factory) -> None:
    # A teacher whose head is random: its soft targets disagree with the hard labels, so only a
    # student that listens to it ends up close to it.
    teacher = tiny_bert_factory("teacher", architecture="BertForSequenceClassification", seed=7,
                                id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1}, initializer_range=0.5)
    task = synthetic_task(n_train=200)
    base = replace(FAST, epochs=3, train_limit=200)
    distilled = replace(base, distill=TaskDistillRecipe(teacher=str(teacher), temperature=2.0, weight=0.9))
    tokenizer = load_tokenizer(tiny_bert_session_dir)
    prep_plain = prepare(task, tokenizer, base)
    prep_kd = prepare(task, tokenizer, distilled, teacher)
    assert prep_kd.teacher_logits is not None and prep_kd.teacher_logits.shape == (200, 2)
    t_logits = torch.from_numpy(prep_kd.teacher_logits)

    def kl_after(ft: FinetuneRecipe, prep) -> float:
        model = train_seed(tiny_bert_session_dir, prep, ft, 0)[0]
        return mean_kl(torch.from_numpy(predict_logits(model, prep.train, 64, prep.pad_id)), t_logits)

    plain, kd = kl_after(base, prep_plain), kl_after(distilled, prep_kd)
    assert kd < 0.5 * plain, (kd, plain)


def test_the_teachers_soft_targets_follow_finetune_bf16(tiny_bert_session_dir: Path, tiny_bert_factory) -> None:
    teacher = tiny_bert_factory("teacher", architecture="BertForSequenceClassification", seed=7,
                                id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1}, initializer_range=0.5)
    task, tokenizer = synthetic_task(n_train=64), load_tokenizer(tiny_bert_session_dir)
    ft = replace(FAST, train_limit=64, distill=TaskDistillRecipe(teacher=str(teacher)))
    full, half = (prepare(task, tokenizer, replace(ft, bf16=bf16), teacher) for bf16 in (False, True))
    assert (full.info["teacher_bf16"], half.info["teacher_bf16"]) == (False, True)
    model, teacher_tokenizer, _ = load_task_model(teacher)
    expected = predict_logits(model, full.train, 64, teacher_tokenizer.pad_token_id)  # float32, outside autocast
    assert full.teacher_logits is not None and half.teacher_logits is not None
    np.testing.assert_allclose(full.teacher_logits, expected, atol=1e-5)
    assert half.teacher_logits.dtype == np.float32 and not np.array_equal(half.teacher_logits, expected)  # bf16 ran
    probabilities = [torch.softmax(torch.from_numpy(x) / 2.0, -1) for x in (half.teacher_logits, expected)]  # T = 2
    assert float((probabilities[0] - probabilities[1]).abs().max()) < 0.02


def test_distillation_through_the_library_records_the_teacher(tmp_path: Path, tiny_bert_session_dir: Path) -> None:
    task = synthetic_task()
    teacher = tmp_path / "teacher-task"
    api.finetune_model(str(tiny_bert_session_dir), FAST, teacher, [0], task=task)
    ft = replace(FAST, distill=TaskDistillRecipe(teacher=str(teacher)))
    metrics = api.finetune_model(str(tiny_bert_session_dir), ft, tmp_path / "student-task", [0], task=task,
                                 distill_teacher=teacher)
    assert metrics["distill_teacher"] == str(teacher)
    assert metrics["splits"]["test"]["accuracy"] > 0.9


def test_predict_logits_reports_every_example_once_to_its_progress_callback(tiny_bert_factory) -> None:
    model_dir = tiny_bert_factory("scorer", architecture="BertForSequenceClassification", seed=3,
                                  id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    model, tokenizer, _ = load_task_model(model_dir)
    prep = prepare(synthetic_task(n_train=70), tokenizer, replace(FAST, train_limit=70))
    seen: list[int] = []

    logits = predict_logits(model, prep.train, 32, prep.pad_id, on_batch=seen.append)

    assert sum(seen) == len(prep.train) == 70 and len(seen) == 3  # batches of 32, 32, 6
    np.testing.assert_array_equal(logits, predict_logits(model, prep.train, 32, prep.pad_id))
