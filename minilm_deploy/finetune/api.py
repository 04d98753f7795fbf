"""The fine-tuning stage as library calls (the CLI and `minilm run` are thin wrappers over these).

- `finetune_model(spec, ft, output, seeds)`: fine-tune one encoder once per seed and write ONE
  Hugging Face folder, atomically: the weights of the seed with the best dev score, the tokenizer,
  `metrics.json` (every metric of every seed, mean ± std over seeds, times), `run.json` and the
  effective `recipe.yaml`. Work in progress lives in `<output>.partial/` (removed when the output is
  written); with `resume`, an interrupted run continues from it:

  ```
  <output>.partial/
    started.json            what was asked (model, seeds, teacher, the finetune section): a resume must match
    seed-<s>/step-NNNNNNN/  the seed in progress: its newest checkpoint (see `minilm_deploy.checkpoint`)
    seed-<s>.json           a finished seed's record
    best/                   the best finished seed's model folder
  ```
- `finetune_recipe(recipe)`: the recipe's `finetune.models` (teacher, student, ...) into
  `<run_dir>/<role>-task`; the teacher first when the others distil from it.
- `evaluate_model(folder, task, splits)` / `evaluate_recipe(recipe)`: `minilm eval`.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from minilm_deploy.config import to_dict
from minilm_deploy.data.metrics import better
from minilm_deploy.data.types import TaskData
from minilm_deploy.errors import InputError, MinilmError
from minilm_deploy.finetune.evaluate import evaluate_folder
from minilm_deploy.finetune.interrupt import terminate_as_interrupt
from minilm_deploy.finetune.model import save_model, task_model_config
from minilm_deploy.finetune.prepare import prepare
from minilm_deploy.finetune.recipe import ROLES, FinetuneRecipe
from minilm_deploy.finetune.trainer import SeedRun, train_seed
from minilm_deploy.models.loading import check_vocabulary, load_config, load_tokenizer
from minilm_deploy.paths import atomic_directory, atomic_write_text, check_writable, os_error_line, remove_tree
from minilm_deploy.progress import make_progress

METRICS_FILE, RUN_FILE, PARTIAL = "metrics.json", "run.json", ".partial"
# what a resumed run may set differently: which outputs a recipe still makes, how often to checkpoint, evaluation
RESUME_MAY_CHANGE = ("models", "checkpoint_every", "eval_batch_size", "eval_splits")
DEFAULT_EVAL_LENGTH = 128


def finetune_model(
    spec: str, ft: FinetuneRecipe, output: Path, seeds: Sequence[int], *,
    record: Any = None, overwrite: bool = False, label: str = "", distill_teacher: Path | None = None,
    task: TaskData | None = None, resume: bool = False,
) -> dict[str, Any]:
    """Fine-tune `spec` on `ft.task` (or on `task`, already loaded) once per seed; write `output`;
    return its metrics.json content. `resume`: continue the interrupted run in `<output>.partial/`."""
    from minilm_deploy.sources import load_task, resolve_model

    output, seeds, start = Path(output), tuple(seeds) or (0,), time.perf_counter()
    if output.exists() and not overwrite:
        raise InputError(f"{output} already exists; choose another --output or pass --overwrite")
    check_writable(output)
    work = output.with_name(output.name + PARTIAL)
    if ft.distill is not None and distill_teacher is None:
        raise InputError("finetune.distill is set but no teacher was given; set finetune.distill.teacher to a fine-tuned model")
    folder = resolve_model(spec)
    tokenizer = load_tokenizer(folder)
    check_vocabulary(folder, tokenizer, load_config(folder))
    task = task or load_task(ft.task, **ft.task_columns())
    teacher = resolve_model(str(distill_teacher)) if distill_teacher is not None else None
    prep = prepare(task, tokenizer, ft, teacher, student=folder)
    started = json.loads(json.dumps({"model": spec, "seeds": list(seeds), "teacher": str(teacher) if teacher else None,
                                     "finetune": {k: v for k, v in to_dict(ft).items() if k not in RESUME_MAY_CHANGE}}))
    check_partial(work, started, resume)
    wall = time.perf_counter()
    try:
        metrics = train_seeds(spec, folder, tokenizer, task, prep, ft, output, seeds, work, overwrite=overwrite,
                              label=label, record=record, teacher=teacher, start=start, wall=wall)
    except BaseException:  # an interruption keeps what --resume continues; nothing worth it, no folder to trip over
        if not any(work.glob("seed-*/step-*")) and not any(work.glob("seed-*.json")):
            remove_tree(work)
        raise
    remove_tree(work)
    return metrics


def train_seeds(spec: str, folder: Path, tokenizer: Any, task: TaskData, prep: Any, ft: FinetuneRecipe, output: Path,
                seeds: Sequence[int], work: Path, *, overwrite: bool, label: str, record: Any, teacher: Path | None,
                start: float, wall: float) -> dict[str, Any]:
    """Every seed not finished in `work` yet, then `output` written whole; returns its metrics."""
    runs: list[SeedRun] = []
    with terminate_as_interrupt(), atomic_directory(output, overwrite=overwrite) as tmp:
        with make_progress() as progress:
            for seed in seeds:
                if (done := work / f"seed-{seed}.json").is_file():  # finished before an interruption
                    runs.append(SeedRun(**json.loads(done.read_text(encoding="utf-8"))))
                    continue
                model, run = train_seed(folder, prep, ft, seed, progress, label, work=work / f"seed-{seed}")
                if not runs or better(prep.metric, run.best_dev, max_dev(runs, prep.metric)):
                    with atomic_directory(work / "best", overwrite=True) as best_tmp:
                        save_model(model, tokenizer, best_tmp)
                atomic_write_text(done, json.dumps(vars(run), indent=1) + "\n")
                remove_tree(work / f"seed-{seed}")
                runs.append(run)
                del model
        for file in (work / "best").iterdir():
            shutil.copy2(file, tmp / file.name)
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


def check_partial(work: Path, started: dict[str, Any], resume: bool) -> None:
    """Refuse to start over an interrupted run unless resuming it, and to resume one that asked for something
    else; then record what this run asks for."""
    record = work / "started.json"
    if work.exists() and not resume:
        raise InputError(f"{work} holds an interrupted fine-tuning run; continue it with --resume, or remove that folder")
    if resume and record.is_file():
        before = json.loads(record.read_text(encoding="utf-8"))
        for key in ("model", "seeds", "teacher"):
            if before.get(key) != started[key]:
                raise InputError(f"--resume: {key} was {before.get(key)!r} when {work} was started, now {started[key]!r}; "
                                 f"restore it or remove {work}")
        changed = sorted(k for k in {*before["finetune"], *started["finetune"]}
                         if before["finetune"].get(k) != started["finetune"].get(k))
        if changed:
            raise InputError(f"--resume: finetune.{changed[0]} changed since {work} was started "
                             f"({before['finetune'].get(changed[0])!r} → {started['finetune'].get(changed[0])!r}); "
                             f"restore it or remove {work}")
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MinilmError(os_error_line(exc, path=work, writing=True)) from None
    atomic_write_text(record, json.dumps(started, indent=1) + "\n")


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


def finetune_recipe(recipe: Any, *, overwrite: bool = False, seeds: Sequence[int] | None = None,
                    resume: bool = False) -> list[dict[str, Any]]:
    """Fine-tune every model the recipe's `finetune.models` names (the teacher first)."""
    ft = require_section(recipe)
    seeds = tuple(seeds or ft.seeds or (recipe.seed,))
    teacher = Path(ft.distill.teacher) if ft.distill and ft.distill.teacher else recipe.run_dir / "teacher-task"
    results = []
    for role in sorted(ft.models, key=lambda r: r != "teacher"):
        own = replace(ft, distill=None) if role == "teacher" else ft
        results.append(finetune_model(
            role_spec(recipe, role), own, role_output(recipe, role), seeds, record=recipe, overwrite=overwrite,
            label=role, distill_teacher=teacher if own.distill else None, resume=resume,
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
