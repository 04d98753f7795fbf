"""The fine-tuning stage as library calls (the CLI and `minilm run` are thin wrappers over these).

- `finetune_model(spec, ft, output, seeds)`: fine-tune one encoder once per seed and write ONE
  Hugging Face folder, atomically: the weights of the seed with the best dev score, the tokenizer,
  `metrics.json` (every metric of every seed, mean ± std over seeds, times), `run.json` and the
  effective `recipe.yaml`.
- `finetune_recipe(recipe)`: the recipe's `finetune.models` (teacher, student, ...) into
  `<run_dir>/<role>-task`; the teacher first when the others distil from it.
- `evaluate_model(folder, task, splits)` / `evaluate_recipe(recipe)`: `minilm eval`.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from minilm_deploy.data.metrics import better
from minilm_deploy.data.types import TaskData
from minilm_deploy.errors import InputError
from minilm_deploy.finetune.evaluate import evaluate_folder
from minilm_deploy.finetune.interrupt import terminate_as_interrupt
from minilm_deploy.finetune.model import save_model, task_model_config
from minilm_deploy.finetune.prepare import prepare
from minilm_deploy.finetune.recipe import ROLES, FinetuneRecipe
from minilm_deploy.finetune.trainer import SeedRun, train_seed
from minilm_deploy.models.loading import check_vocabulary, load_config, load_tokenizer
from minilm_deploy.paths import atomic_directory, atomic_write_text, check_writable
from minilm_deploy.progress import make_progress

METRICS_FILE, RUN_FILE = "metrics.json", "run.json"
DEFAULT_EVAL_LENGTH = 128


def finetune_model(
    spec: str, ft: FinetuneRecipe, output: Path, seeds: Sequence[int], *,
    record: Any = None, overwrite: bool = False, label: str = "", distill_teacher: Path | None = None,
    task: TaskData | None = None,
) -> dict[str, Any]:
    """Fine-tune `spec` on `ft.task` (or on `task`, already loaded) once per seed; write `output`;
    return its metrics.json content."""
    from minilm_deploy.sources import load_task, resolve_model

    output, seeds, start = Path(output), tuple(seeds) or (0,), time.perf_counter()
    if output.exists() and not overwrite:
        raise InputError(f"{output} already exists; choose another --output or pass --overwrite")
    check_writable(output)
    if ft.distill is not None and distill_teacher is None:
        raise InputError("finetune.distill is set but no teacher was given; set finetune.distill.teacher to a fine-tuned model")
    folder = resolve_model(spec)
    tokenizer = load_tokenizer(folder)
    check_vocabulary(folder, tokenizer, load_config(folder))
    task = task or load_task(ft.task, **ft.task_columns())
    teacher = resolve_model(str(distill_teacher)) if distill_teacher is not None else None
    prep = prepare(task, tokenizer, ft, teacher)
    wall = time.perf_counter()
    runs: list[SeedRun] = []
    with terminate_as_interrupt(), atomic_directory(output, overwrite=overwrite) as tmp:
        with make_progress() as progress:
            for seed in seeds:
                model, run = train_seed(folder, prep, ft, seed, progress, label)
                if not runs or better(prep.metric, run.best_dev, max_dev(runs, prep.metric)):
                    save_model(model, tokenizer, tmp)
                runs.append(run)
                del model
        best = best_run(runs, prep.metric)
        metrics = {
            "task": task.name, "kind": task.kind, "metric": prep.metric, "model": spec, "model_path": str(folder),
            "output": str(output),            "label_names": list(prep.head.label_names), "seeds": list(seeds), "best_seed": best.seed,
            "splits": best.splits, "summary": summarize(runs), "runs": [vars(r) for r in runs],
            "train_seconds": sum(r.train_seconds for r in runs), "prepare_seconds": wall - start,
            "wall_seconds": time.perf_counter() - start,  # everything: loading, tokenizing, every seed, evaluation
            "distill_teacher": str(teacher) if teacher else None, "data": prep.info,
        }
        write_outputs(tmp, metrics, ft, record, spec, best.seed)
    return metrics


def max_dev(runs: Sequence[SeedRun], metric: str) -> float:
    return best_run(runs, metric).best_dev


def best_run(runs: Sequence[SeedRun], metric: str) -> SeedRun:
    best = runs[0]
    for run in runs[1:]:
        if better(metric, run.best_dev, best.best_dev):
            best = run
    return best


def summarize(runs: Sequence[SeedRun]) -> dict[str, dict[str, dict[str, Any]]]:
    """{split: {metric: {mean, std, values}}} over seeds; std is the sample std (ddof=1), 0 for one seed."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for split in runs[0].splits:
        out[split] = {}
        for name in runs[0].splits[split]:
            if name == "n":
                continue
            values = np.array([r.splits[split][name] for r in runs], dtype=np.float64)
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            out[split][name] = {"mean": float(values.mean()), "std": std, "values": values.tolist()}
    return out


def write_outputs(folder: Path, metrics: dict[str, Any], ft: FinetuneRecipe, record: Any, spec: str, seed: int) -> None:
    import torch
    import transformers

    from minilm_deploy import __version__
    from minilm_deploy.recipe import Recipe, save_recipe

    atomic_write_text(folder / METRICS_FILE, json.dumps(metrics, indent=2, default=str) + "\n")
    run = {
        "stage": "finetune", "task": metrics["task"], "task_spec": ft.task, "kind": metrics["kind"], "label_names": metrics["label_names"],
        "max_length": ft.max_length, "source_model": spec, "seed": seed, "train_seconds": metrics["train_seconds"],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": {"minilm_deploy": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
    }
    atomic_write_text(folder / RUN_FILE, json.dumps(run, indent=2) + "\n")
    if record is None:  # run alone: the effective recipe that reproduces this folder
        record = Recipe(name=Path(spec).name.replace(":", "-") or "finetune", teacher=spec, seed=metrics["seeds"][0],
                        finetune=replace(ft, models=(spec,), seeds=tuple(metrics["seeds"])))
    save_recipe(record, folder)


def role_spec(recipe: Any, role: str) -> str:
    """A recipe's model role as a model spec: the distilled student folder, the teacher, or as given."""
    if role == "student":
        return str(recipe.run_dir / "student")
    return recipe.teacher if role == "teacher" else role


def role_output(recipe: Any, role: str) -> Path:
    name = role if role in ROLES else (Path(role).name or role).replace(":", "-").replace("/", "-")
    return recipe.run_dir / f"{name}-task"


def finetune_recipe(recipe: Any, *, overwrite: bool = False, seeds: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Fine-tune every model the recipe's `finetune.models` names (the teacher first)."""
    ft = require_section(recipe)
    seeds = tuple(seeds or ft.seeds or (recipe.seed,))
    teacher = Path(ft.distill.teacher) if ft.distill and ft.distill.teacher else recipe.run_dir / "teacher-task"
    results = []
    for role in sorted(ft.models, key=lambda r: r != "teacher"):
        own = replace(ft, distill=None) if role == "teacher" else ft
        results.append(finetune_model(
            role_spec(recipe, role), own, role_output(recipe, role), seeds, record=recipe, overwrite=overwrite,
            label=role, distill_teacher=teacher if own.distill else None,
        ))
    return results


def require_section(recipe: Any) -> FinetuneRecipe:
    if recipe.finetune is None:
        raise InputError(f"recipe {recipe.name}: no finetune: section; add one (see recipes/quickstart.yaml)")
    return recipe.finetune


def eval_length(folder: Path, given: int | None) -> int:
    """The max length to evaluate with: given, else the one the model was fine-tuned with."""
    if given:
        return given
    run = folder / RUN_FILE
    if run.is_file():
        return int(json.loads(run.read_text(encoding="utf-8")).get("max_length", DEFAULT_EVAL_LENGTH))
    return DEFAULT_EVAL_LENGTH


def task_of(folder: Path) -> str | None:
    """The task spec a model folder was fine-tuned on (from its run.json), if recorded."""
    run = folder / RUN_FILE
    return json.loads(run.read_text(encoding="utf-8")).get("task_spec") if run.is_file() else None


def evaluate_model(
    spec: str, task_spec: str | TaskData | None, splits: Sequence[str], *, max_length: int | None = None, batch_size: int = 128,
    columns: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """{model, task, kind, max_length, splits: {split: metrics}} for a fine-tuned model (task: a spec,
    a loaded TaskData, or None for the one recorded in the model's run.json)."""
    from minilm_deploy.sources import load_task, resolve_model

    folder = resolve_model(spec)
    task_model_config(folder)  # a bare encoder fails here, before the task is loaded
    task_spec = task_spec or task_of(folder)
    if not task_spec:
        raise InputError(f"{spec}: no task recorded in its run.json; give --task")
    task = task_spec if isinstance(task_spec, TaskData) else load_task(task_spec, **(columns or {}))
    length = eval_length(folder, max_length)
    results = evaluate_folder(folder, task, splits, max_length=length, batch_size=batch_size)
    return {"model": spec, "task": task.name, "kind": task.kind, "max_length": length, "splits": results}


def evaluate_recipe(recipe: Any, splits: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Evaluate each `<run_dir>/<role>-task` of the recipe on its eval splits (cross-lingual: all of them)."""
    ft = require_section(recipe)
    return [
        evaluate_model(str(role_output(recipe, role)), ft.task, splits or ft.eval_splits, max_length=ft.max_length,
                       batch_size=ft.eval_batch_size, columns=ft.task_columns())
        for role in ft.models
    ]
