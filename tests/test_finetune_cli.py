"""`minilm finetune` and `minilm eval` end to end: local task files, seeds, recipes, cross-lingual
splits; and (slow) the real zoo:all-minilm-l6-v2 on rotten-tomatoes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from test_finetune_train import FILLER, sentences

from minilm_deploy.cli.main import main
from minilm_deploy.recipe import load_recipe

FAST_SET = ["--set", "epochs=6", "--set", "lr=3e-3", "--set", "batch_size=16", "--set", "max_length=32"]
# "Foreign" test splits: the same cue words amid other filler words, as a stand-in for other languages.
FOREIGN = {"test-fr": "le la film cinema histoire il est ce tres quoi comment",
           "test-nl": "de het film bioscoop verhaal het is dit erg wat hoe"}


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "task"
    folder.mkdir()
    write_csv(folder / "train.csv", sentences(400, 1))
    write_csv(folder / "dev.csv", sentences(100, 2))
    write_csv(folder / "test.csv", sentences(200, 3))
    for i, (split, words) in enumerate(FOREIGN.items()):
        translate = dict(zip(FILLER, words.split(), strict=True))
        rows = [(" ".join(translate.get(w, w) for w in text.split()), label) for text, label in sentences(100, 10 + i)]
        write_csv(folder / f"{split}.csv", rows)
    return folder


def run_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    code = main([*args, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_finetune_then_eval_from_the_command_line(tmp_path: Path, task_dir: Path, tiny_bert_session_dir: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiny-task"
    result = run_json(["finetune", str(tiny_bert_session_dir), "--task", str(task_dir), *FAST_SET,
                       "--seeds", "1,2", "--output", str(out)], capsys)
    assert result["output"] == str(out) and result["seeds"] == [1, 2]
    assert result["summary"]["test"]["accuracy"]["mean"] > 0.95
    assert len(result["summary"]["test"]["accuracy"]["values"]) == 2
    assert json.loads((out / "metrics.json").read_text())["summary"] == result["summary"]
    saved = load_recipe(out / "recipe.yaml")  # the effective recipe: rerunnable with `minilm finetune --recipe`
    assert saved.finetune is not None and saved.finetune.seeds == (1, 2) and saved.finetune.epochs == 6
    assert saved.finetune.task == str(task_dir) and saved.finetune.models == (str(tiny_bert_session_dir),)

    scored = run_json(["eval", str(out), "--task", str(task_dir), "--split", "test,dev"], capsys)
    best = next(r for r in result["runs"] if r["seed"] == result["best_seed"])
    assert scored["splits"]["test"]["accuracy"] == pytest.approx(best["splits"]["test"]["accuracy"])
    assert set(scored["splits"]) == {"test", "dev"}
    assert run_json(["eval", str(out)], capsys)["splits"]["test"]["n"] == 200  # task and split from run.json

    assert main(["eval", str(out), "--task", str(task_dir / "test.csv")]) == 0  # a single file is the test split
    human = capsys.readouterr().out
    assert "test (n=200): accuracy" in human and "macro_f1" in human and "mcc" in human


def test_cross_lingual_in_one_command_from_a_recipe(tmp_path: Path, task_dir: Path, tiny_bert_session_dir: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "xling.yaml"
    recipe.write_text(
        f"name: xling\nteacher: {tiny_bert_session_dir}\noutput_dir: {tmp_path / 'run'}\nseed: 3\n"
        f"finetune:\n  task: {task_dir}\n  models: [teacher]\n  epochs: 6\n  lr: 3.0e-3\n  batch_size: 16\n"
        "  max_length: 32\n  eval_splits: [test, test-fr, test-nl]\n",
        encoding="utf-8",
    )
    trained = run_json(["finetune", "--recipe", str(recipe)], capsys)
    assert trained["output"] == str(tmp_path / "run" / "teacher-task") and trained["seeds"] == [3]
    assert set(trained["splits"]) == {"dev", "test", "test-fr", "test-nl"}
    assert (tmp_path / "run" / "teacher-task" / "recipe.yaml").read_text().startswith("name: xling")

    scored = run_json(["eval", "--recipe", str(recipe)], capsys)
    assert set(scored["splits"]) == {"test", "test-fr", "test-nl"}
    for split in ("test", "test-fr", "test-nl"):
        assert scored["splits"][split]["accuracy"] == pytest.approx(trained["splits"][split]["accuracy"])
    assert scored["splits"]["test-fr"]["accuracy"] > 0.9  # the cue words carry over


def test_recipe_mode_fine_tunes_teacher_then_distils_into_student(tmp_path: Path, task_dir: Path, tiny_bert_session_dir: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import make_tiny_bert

    run = tmp_path / "run"
    make_tiny_bert(run / "student", num_hidden_layers=1, seed=5)  # stands in for a distilled student
    recipe = tmp_path / "kd.yaml"
    recipe.write_text(
        f"name: kd\nteacher: {tiny_bert_session_dir}\noutput_dir: {run}\n"
        f"finetune:\n  task: {task_dir}\n  models: [student, teacher]\n  epochs: 6\n  lr: 3.0e-3\n"
        "  batch_size: 16\n  max_length: 32\n  distill: {temperature: 2.0, weight: 0.5}\n",
        encoding="utf-8",
    )
    result = run_json(["finetune", "--recipe", str(recipe), "--set", "epochs=5", "--set", "finetune.distill.augment=1"], capsys)
    teacher, student = result["models"]  # the teacher first: the student distils from it
    assert student["data"]["sizes"]["train_augmented"] == student["data"]["sizes"]["train"]  # one copy each
    assert "train_augmented" not in teacher["data"]["sizes"]  # the teacher has no teacher: no copies
    assert teacher["output"] == str(run / "teacher-task") and teacher["distill_teacher"] is None
    assert student["output"] == str(run / "student-task") and student["distill_teacher"] == str(run / "teacher-task")
    assert student["splits"]["test"]["accuracy"] > 0.9
    assert json.loads((run / "student-task" / "run.json").read_text())["task_spec"] == str(task_dir)
    assert "epochs: 5" in (run / "student-task" / "recipe.yaml").read_text()  # the effective recipe, overrides applied

    scored = run_json(["eval", "student", "--recipe", str(recipe)], capsys)  # a role names <run_dir>/<role>-task
    assert scored["model"] == str(run / "student-task")
    assert scored["splits"]["test"]["accuracy"] == pytest.approx(student["splits"]["test"]["accuracy"])
    again = run_json(["finetune", "teacher", "--recipe", str(recipe), "--output", str(tmp_path / "t2"),
                      "--set", "epochs=1"], capsys)
    assert again["distill_teacher"] is None and again["output"] == str(tmp_path / "t2")


@pytest.mark.slow
def test_real_minilm_on_rotten_tomatoes_beats_the_majority_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from minilm_deploy.sources import load_task

    test = load_task("zoo:rotten-tomatoes").splits["test"]
    majority = max(sum(ex.label == name for ex in test) for name in {ex.label for ex in test}) / len(test)
    out = tmp_path / "rt"
    result = run_json(["finetune", "zoo:all-minilm-l6-v2", "--task", "zoo:rotten-tomatoes", "--output", str(out),
                       "--set", "train_limit=2000", "--set", "dev_limit=300", "--set", "max_length=64",
                       "--set", "epochs=1", "--set", "lr=1e-4", "--set", "batch_size=32", "--seeds", "0"], capsys)
    accuracy = result["splits"]["test"]["accuracy"]
    assert result["splits"]["test"]["n"] == len(test)
    assert accuracy > majority + 0.15, (accuracy, majority)
