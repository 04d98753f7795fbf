"""`minilm run`: the stages chained on a tiny model, resuming, and recipes refused before any work."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from minilm_deploy.cli.main import main
from minilm_deploy.errors import InputError
from minilm_deploy.pipeline import SUMMARY_FILE, preflight, run_pipeline, summary_table
from minilm_deploy.recipe import RECIPE_FILE, recipe_from_dict

POSITIVE = ["good great fun movie", "great fun film", "love this good story", "a very good film", "fun and great"]
NEGATIVE = ["bad rotten movie", "hate this bad plot", "a very bad film", "rotten and bad", "not fun bad story"]


def _write_task(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for split, repeat in (("train", 6), ("dev", 2), ("test", 2)):
        with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            for i in range(repeat):
                for text in POSITIVE:
                    writer.writerow([f"{text} {'it' if i % 2 else 'this'}", "pos"])
                for text in NEGATIVE:
                    writer.writerow([f"{text} {'it' if i % 2 else 'this'}", "neg"])
    return folder


def _recipe(tmp_path: Path, teacher: Path, **changes: Any) -> dict[str, Any]:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(POSITIVE + NEGATIVE) * 4 + "\n", encoding="utf-8")
    task = str(_write_task(tmp_path / "task")) if not (tmp_path / "task").exists() else str(tmp_path / "task")
    data: dict[str, Any] = {
        "name": "tiny", "teacher": str(teacher), "output_dir": str(tmp_path / "run"), "seed": 0,
        "distill": {"corpus": str(corpus), "student": {"layers": 1, "hidden": 32},
                    "train": {"steps": 3, "batch_size": 4, "max_length": 16, "checkpoint_every": 2, "log_every": 1}},
        "finetune": {"task": task, "models": ["teacher", "student"], "max_length": 16, "batch_size": 8,
                     "lr": 1e-3, "epochs": 1, "eval_splits": ["test"]},
        "export": {"name": "onnx-cpu-fp32", "precision": "fp32", "max_length": 32,
                   "shapes": {"batch": {"min": 1, "opt": 1, "max": 8}, "sequence": {"min": 1, "opt": 16, "max": 32}}},
        "bench": {"name": "tiny", "split": "test", "probe_train_limit": 50, "grid": {"batch_sizes": [1], "seq_lens": [16]},
                  "real_batch_size": 0, "timing": {"warmup": 1, "min_iterations": 2, "min_duration_s": 0.0},
                  "threads": 1, "isolate": False},
    }
    data.update(changes)
    return data


def test_run_chains_every_stage_then_resumes_by_skipping_complete_ones(tmp_path: Path, tiny_bert_dir: Path) -> None:
    recipe = recipe_from_dict(_recipe(tmp_path, tiny_bert_dir))
    events: list[tuple[str, str]] = []
    summary = run_pipeline(recipe, on_stage=lambda stage, status: events.append((stage, status)))
    run = tmp_path / "run"
    assert [s for s, status in events if status.startswith("done")] == ["distill", "finetune", "export", "bench"]
    for part in ("student/run.json", "teacher-task/metrics.json", "student-task/metrics.json",
                 "export/manifest.json", "bench/results.json", SUMMARY_FILE, RECIPE_FILE):
        assert (run / part).is_file(), part
    rows = {r["model"]: r for r in summary["rows"]}
    assert set(rows) == {"teacher", "student", "student-onnx-fp32"}
    assert rows["teacher"]["retained"] == pytest.approx(1.0)
    assert rows["student"]["parameters"] < rows["teacher"]["parameters"]
    assert all(r["accuracy"] is not None and r["latency_ms_b1"] > 0 for r in rows.values())
    assert "| student-onnx-fp32 |" in summary_table(summary) and "speed-up (grid): the geometric mean" in summary_table(summary)
    assert json.loads((run / SUMMARY_FILE).read_text())["rows"] == summary["rows"]

    # A second run finds everything complete; after losing the export and the bench, only those run again.
    events.clear()
    run_pipeline(recipe, on_stage=lambda stage, status: events.append((stage, status)))
    assert all(status.startswith("skipped") for _, status in events) and len(events) == 4
    for folder in ("export", "bench"):
        import shutil

        shutil.rmtree(run / folder)
    events.clear()
    run_pipeline(recipe, on_stage=lambda stage, status: events.append((stage, status)))
    assert [s for s, status in events if status.startswith("done")] == ["export", "bench"]


def test_export_auto_in_a_recipe_keeps_the_fastest_validated_path(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from minilm_deploy.artifact import load_manifest

    recipe = recipe_from_dict(_recipe(tmp_path, tiny_bert_dir, export="auto"))
    summary = run_pipeline(recipe)
    rows = {r["model"]: r for r in summary["rows"]}
    assert set(rows) == {"teacher", "student", "student-auto"}
    auto = load_manifest(tmp_path / "run" / "export").auto
    assert auto["chosen"] in auto["candidates"] and auto["candidates"][auto["chosen"]]["status"] == "passed"
    assert auto["points"][0].startswith("b1 real")  # the recipe's task gives the real texts


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"distill": {"corpus": "x.txt", "student": {"layers": 3, "hidden": 32}, "train": {"steps": 1}}},
         "more layers than its teacher"),
        ({"distill": {"corpus": "x.txt", "student": {"layers": 1, "hidden": 64}, "train": {"steps": 1}}},
         "wider than its teacher"),
        ({"distill": {"corpus": "x.txt", "student": {"layers": 1, "hidden": 32, "heads": 2}, "train": {"steps": 1}}},
         "compares attention head by head"),
        ({"distill": {"corpus": "x.txt", "student": {"layers": 1, "hidden": 16, "init": "teacher-layers"},
                      "train": {"steps": 1}}}, "hidden must equal the teacher's"),
        ({"finetune": {"task": "zoo:no-such-task"}}, "unknown zoo name 'no-such-task'"),
        ({"distill": None, "finetune": None, "export": None, "bench": None}, "has no stage sections"),
    ],
)
def test_recipes_that_do_not_fit_are_refused_before_any_work(
    tmp_path: Path, tiny_bert_session_dir: Path, changes: dict[str, Any], message: str
) -> None:
    recipe = recipe_from_dict(_recipe(tmp_path, tiny_bert_session_dir, **changes))
    with pytest.raises(InputError, match=message):
        run_pipeline(recipe)
    assert not (tmp_path / "run").exists()


DISTILL_CASES = [  # (student, loss) → the verdict both commands must give (None: it fits)
    ({"layers": 1, "hidden": 32}, {}, None),
    ({"layers": 3, "hidden": 32}, {}, "more layers than its teacher"),
    ({"layers": 1, "hidden": 64}, {}, "wider than its teacher"),
    ({"layers": 1, "hidden": 32, "heads": 2}, {}, "compares attention head by head"),
    ({"layers": 1, "hidden": 32, "heads": 2}, {"relation_heads": 4}, None),  # v1 with relation_heads: accepted
    ({"layers": 1, "hidden": 30}, {}, "not divisible by 4 heads"),  # the teacher's 4 heads
    ({"layers": 2, "hidden": 32, "init": "teacher-layers", "init_layers": [0, 5]}, {}, "the teacher's layers are 0..1"),
    ({"layers": 2, "hidden": 32}, {"student_layer": 1}, "leaves the student's layers 2..2 untrained"),
    ({"layers": 1, "hidden": 32}, {"teacher_layer": 7}, "distill.loss.teacher_layer=7"),
]


@pytest.mark.parametrize(("student", "loss", "verdict"), DISTILL_CASES)
def test_minilm_run_and_minilm_distill_give_the_same_verdict(tmp_path, tiny_bert_session_dir, capsys,
                                                              student, loss, verdict) -> None:
    """Issue 17: one rule per fact; `minilm run`'s pre-flight is the distill stage's own check."""
    import yaml

    from minilm_deploy.pipeline import preflight

    data = _recipe(tmp_path, tiny_bert_session_dir)
    data["distill"] = {**data["distill"], "student": student, "loss": loss, "train": {**data["distill"]["train"], "steps": 1}}
    verdicts = []
    try:
        preflight(recipe_from_dict(data))
        verdicts.append(None)
    except InputError as exc:
        verdicts.append(str(exc))
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({k: data[k] for k in ("name", "teacher", "output_dir", "seed", "distill")}))
    capsys.readouterr()
    code = main(["distill", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    verdicts.append(None if code == 0 else err[-1].removeprefix("minilm: error: "))
    if verdict is None:
        assert verdicts == [None, None], verdicts
    else:
        assert all(v is not None and verdict in v for v in verdicts), verdicts
        assert verdicts[0] == verdicts[1]  # the same rule, the same words


def test_cli_run_refuses_a_bad_recipe_with_one_line(tmp_path: Path, tiny_bert_session_dir: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    data = _recipe(tmp_path, tiny_bert_session_dir)
    data["distill"]["student"]["layers"] = 5
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "more layers than its teacher (2)" in err[0]
    assert main(["run", str(path), "--set", "distill.student.layers=six"]) == 2
    assert "distill.student.layers: expected int, got 'six'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_quickstart_recipe_passes_its_checks() -> None:
    from minilm_deploy.recipe import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml")
    assert recipe.distill and recipe.finetune and recipe.export and recipe.bench
    preflight(recipe)


def _interrupt_when(proc: Any, ready: Callable[[], bool], timeout: float = 120.0) -> tuple[int, str]:
    """Send Ctrl-C (SIGINT) to `proc` once `ready()` holds; return its exit code and stderr."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the run ended before it could be interrupted: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "the run never reached the point to interrupt"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_ctrl_c_during_distillation_and_finetuning_leaves_a_run_that_a_second_run_completes(
    tmp_path: Path, tiny_bert_session_dir: Path
) -> None:
    """End to end, in a real subprocess: interrupt, exit 130 with one line and no traceback, run again, resume."""
    import os
    import subprocess
    import sys

    import yaml

    data = _recipe(tmp_path, tiny_bert_session_dir)
    data["distill"]["train"].update(steps=400, checkpoint_every=5, log_every=5)
    data["finetune"]["epochs"] = 60  # long enough to be caught in the middle
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    run = tmp_path / "run"
    # A shell without job control starts background jobs with SIGINT ignored, and children inherit that:
    # restore Python's default handler so the test means the same wherever pytest runs.
    boot = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); from minilm_deploy.cli.main import entry; entry()"
    command = [sys.executable, "-c", boot, "run", str(recipe_file)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    checkpoints = run / "student.partial" / "checkpoints"
    code, err = _interrupt_when(start(), lambda: len(list(checkpoints.glob("step-*"))) >= 2)
    assert code == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err.strip().splitlines()[-1]
    assert not (run / "student").exists() and any(checkpoints.glob("step-*"))  # no half-written student, checkpoints kept
    interrupted_at = max(int(p.name.split("-")[1]) for p in checkpoints.glob("step-*"))
    assert 0 < interrupted_at < 400

    # Second run: distillation continues from its last checkpoint; interrupt it again while the
    # student is fine-tuned (the teacher's fine-tuning is complete by then).
    teacher_metrics = run / "teacher-task" / "metrics.json"
    code, err = _interrupt_when(start(), teacher_metrics.is_file)
    assert code == 130 and "Traceback" not in err, err[-2000:]
    steps = [json.loads(line)["step"] for line in (run / "student" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 400  # one log, no step twice: resumed, not restarted
    logged = [int(n) for n in re.findall(r"student step (\d+)/400", err)]
    assert logged and logged[0] == interrupted_at + 5  # the second run's first step follows the checkpoint
    assert not (run / "student-task").exists() and not list(run.glob(".student-task.tmp-*"))  # nothing half-written
    teacher_done_at = teacher_metrics.stat().st_mtime_ns

    # Third run: skips the distillation and the teacher's fine-tuning, fine-tunes the student, completes.
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "distill: skipped (already complete)" in done.stderr
    assert teacher_metrics.stat().st_mtime_ns == teacher_done_at
    assert (run / "student-task" / "metrics.json").is_file() and (run / SUMMARY_FILE).is_file()
