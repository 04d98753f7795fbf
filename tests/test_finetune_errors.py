"""Bad input fails before training with one line, and nothing half-written is left behind."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from conftest import make_tiny_bert
from test_finetune_train import FAST, synthetic_task

from minilm_deploy.cli.main import main
from minilm_deploy.data.types import Example, TaskData
from minilm_deploy.errors import InputError
from minilm_deploy.finetune import api
from minilm_deploy.finetune.recipe import FinetuneRecipe, TaskDistillRecipe

QUICK = replace(FAST, epochs=1, train_limit=32, dev_limit=16)


def small_vocab_bert(folder: Path) -> Path:
    """A tiny BERT whose embedding has 40 rows next to the ~190-token tiny tokenizer."""
    import transformers
    from conftest import TINY_BERT, save_tiny_tokenizer  # noqa: I001

    save_tiny_tokenizer(folder)
    transformers.BertModel(transformers.BertConfig(vocab_size=40, **TINY_BERT)).save_pretrained(str(folder))
    return folder


def one_line(exc: pytest.ExceptionInfo[InputError]) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


def nothing_written(out: Path, resumable: bool = False) -> None:
    """No output and no temporary folder; `<out>.partial` only after an interruption with work to resume."""
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.tmp-*"))
    assert out.with_name(out.name + ".partial").exists() == resumable


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_empty_split(tmp_path: Path, tiny_bert_session_dir: Path, split: str) -> None:
    task = synthetic_task()
    task = replace(task, splits={**task.splits, split: ()})
    out = tmp_path / "out"
    with pytest.raises(InputError) as exc:
        api.finetune_model(str(tiny_bert_session_dir), QUICK, out, [0], task=task)
    assert f"split {split!r} is empty" in one_line(exc)
    nothing_written(out)


def test_unknown_label_in_evaluation_data(tmp_path: Path, tiny_bert_session_dir: Path) -> None:
    task = synthetic_task(test=(Example("a good movie", None, "pos"), Example("meh", None, "neutral")))
    out = tmp_path / "out"
    with pytest.raises(InputError) as exc:
        api.finetune_model(str(tiny_bert_session_dir), QUICK, out, [0], task=task)
    message = one_line(exc)
    assert "'neutral'" in message and "row 2" in message and "'test'" in message
    nothing_written(out)


def test_unknown_label_when_evaluating_a_fine_tuned_model(tmp_path: Path, tiny_bert_session_dir: Path) -> None:
    out = tmp_path / "out"
    api.finetune_model(str(tiny_bert_session_dir), QUICK, out, [0], task=synthetic_task())
    other = TaskData("other", "classification", {"test": (Example("x", None, "spam"),)}, ("spam",))
    with pytest.raises(InputError, match="label 'spam', unknown to the model"):
        api.evaluate_model(str(out), other, ["test"])
    with pytest.raises(InputError, match="no split 'test-fr'; it has dev, test, train"):
        api.evaluate_model(str(out), synthetic_task(), ["test-fr"])
    regression = TaskData("r", "regression", {"test": (Example("x", None, 1.0),)})
    with pytest.raises(InputError, match="classification model but task r is regression"):
        api.evaluate_model(str(out), regression, ["test"])


def test_model_and_tokenizer_of_different_vocabulary_size(tmp_path: Path) -> None:
    small = small_vocab_bert(tmp_path / "small-vocab")
    out = tmp_path / "out"
    with pytest.raises(InputError) as exc:
        api.finetune_model(str(small), QUICK, out, [0], task=synthetic_task())
    assert "vocabulary has 40" in one_line(exc)
    nothing_written(out)


def test_regression_with_non_numeric_targets(tmp_path: Path, tiny_bert_session_dir: Path) -> None:
    rows = (Example("good", None, 1.0), Example("bad", None, "very good"))
    task = TaskData("r", "regression", {"train": rows, "dev": rows[:1], "test": rows[:1]})
    with pytest.raises(InputError) as exc:
        api.finetune_model(str(tiny_bert_session_dir), QUICK, tmp_path / "out", [0], task=task)
    assert "'very good'" in one_line(exc) and "not a number" in str(exc.value) and "row 2" in str(exc.value)


def test_missing_eval_split_fails_before_training(tmp_path: Path, tiny_bert_session_dir: Path) -> None:
    ft = replace(QUICK, eval_splits=("test", "test-fr"))
    with pytest.raises(InputError, match="no split 'test-fr'"):
        api.finetune_model(str(tiny_bert_session_dir), ft, tmp_path / "out", [0], task=synthetic_task())


def test_distillation_teacher_must_be_a_task_model_with_the_same_labels(tmp_path: Path, tiny_bert_session_dir: Path, tiny_bert_factory) -> None:
    ft = replace(QUICK, distill=TaskDistillRecipe())
    with pytest.raises(InputError, match="not a fine-tuned task model"):
        api.finetune_model(str(tiny_bert_session_dir), ft, tmp_path / "a", [0], task=synthetic_task(),
                           distill_teacher=tiny_bert_session_dir)
    other = tiny_bert_factory("other", architecture="BertForSequenceClassification", id2label={0: "x", 1: "y"},
                              label2id={"x": 0, "y": 1})
    with pytest.raises(InputError, match="differ from the task's"):
        api.finetune_model(str(tiny_bert_session_dir), ft, tmp_path / "b", [0], task=synthetic_task(),
                           distill_teacher=other)


def test_existing_output_needs_overwrite(tmp_path: Path, tiny_bert_session_dir: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="already exists"):
        api.finetune_model(str(tiny_bert_session_dir), QUICK, out, [0], task=synthetic_task())
    api.finetune_model(str(tiny_bert_session_dir), QUICK, out, [0], task=synthetic_task(), overwrite=True)
    assert (out / "metrics.json").is_file() and not (out / "keep.txt").exists()


def test_interrupt_during_training_leaves_nothing(tmp_path: Path, tiny_bert_session_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = api.train_seed
    calls = []

    def interrupted(*args, **kwargs):  # the second seed is interrupted (Ctrl-C) after the first saved a model
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "train_seed", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        api.finetune_model(str(tiny_bert_session_dir), QUICK, out, [1, 2], task=synthetic_task())
    nothing_written(out, resumable=True)  # seed 1 finished: --resume keeps it


def test_recipe_checks_values() -> None:
    for bad in (dict(lr=0.0), dict(epochs=0, steps=0), dict(warmup=-0.1), dict(seeds=(1, 1)), dict(models=()),
                dict(max_length=4), dict(dev_fraction=1.0)):
        with pytest.raises(ValueError):
            FinetuneRecipe(**bad)
    with pytest.raises(ValueError, match="weight"):
        TaskDistillRecipe(weight=1.5)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["finetune", "MODEL", "--seeds", "1,x"], "--seeds '1,x': expected comma-separated integers"),
        (["finetune", "MODEL", "--set", "lr=fast"], "finetune.lr: expected float"),
        (["finetune", "MODEL", "--set", "epochs=0"], "give epochs >= 1 or steps >= 1"),
        (["finetune", "MODEL", "--set", "learning_rate=1"], "finetune.learning_rate: unknown key"),
        (["finetune", "--task", "x.csv"], "give MODEL"),
        (["finetune", "BADVOCAB", "--task", "x.csv"], "vocabulary has 40"),
        (["eval", "MODEL", "--task", "x.csv"], "not a fine-tuned task model"),
        (["eval", "MODEL", "--set", "lr=1"], "--set without --recipe takes only text_column"),
        (["eval", "TASKMODEL", "--task", "nowhere.csv"], "nowhere.csv: no such file or folder"),
        (["eval", "TASKMODEL"], "no task recorded in its run.json; give --task"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args: list[str], needle: str, tiny_bert_session_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    swap = {"MODEL": str(tiny_bert_session_dir)}
    if "TASKMODEL" in args:  # a classifier folder without run.json
        swap["TASKMODEL"] = str(make_tiny_bert(tmp_path / "cls", architecture="BertForSequenceClassification"))
    if "BADVOCAB" in args:
        swap["BADVOCAB"] = str(small_vocab_bert(tmp_path / "bad"))
    argv = [swap.get(a, a) for a in args] + (["--output", str(tmp_path / "o")] if args[0] == "finetune" else [])
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("minilm: error:") and needle in err[0], err
    assert not (tmp_path / "o").exists()


def test_sigterm_during_training_removes_the_temporary_folder(tmp_path: Path, tiny_bert_session_dir: Path) -> None:
    import csv
    import os
    import signal
    import subprocess
    import sys
    import time

    from test_finetune_train import sentences

    task = tmp_path / "task"
    task.mkdir()
    for split, n in (("train", 200), ("dev", 50), ("test", 50)):
        with (task / f"{split}.csv").open("w", newline="") as handle:
            csv.writer(handle).writerows([("text", "label"), *sentences(n, len(split))])
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "minilm_deploy", "finetune", str(tiny_bert_session_dir), "--task", str(task),
         "--output", str(out), "--set", "epochs=500"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.tmp-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err.splitlines()[-1]
    nothing_written(out, resumable=True)  # stopped at a safe point: a checkpoint to resume from


def test_diverging_loss_is_a_one_line_error(tmp_path: Path, tiny_bert_session_dir: Path) -> None:
    from minilm_deploy.errors import MinilmError

    ft = replace(QUICK, lr=1e30, max_grad_norm=0.0)  # the first update sends the weights to inf
    out = tmp_path / "out"
    with pytest.raises(MinilmError, match="diverged") as exc:
        api.finetune_model(str(tiny_bert_session_dir), ft, out, [0], task=synthetic_task())
    assert "\n" not in str(exc.value)
    nothing_written(out)
