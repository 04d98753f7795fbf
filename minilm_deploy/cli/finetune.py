"""`minilm finetune`: fine-tune an encoder (a student, the teacher, any model) on a downstream task."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Annotated, Any

import typer

from minilm_deploy.cli.options import JsonFlag, OutputDir, SetOption, emit
from minilm_deploy.errors import InputError

ModelArg = Annotated[
    str | None,
    typer.Argument(metavar="[MODEL]", show_default=False,
                   help="Encoder to fine-tune: a folder, zoo:NAME, a hub id, or a recipe role (teacher, student). "
                        "Omit it with --recipe to fine-tune every model the recipe names."),
]
TaskOption = Annotated[str | None, typer.Option("--task", "-t", show_default=False,
                                                help="Task: zoo:NAME (see `minilm zoo list`), a CSV/TSV/JSONL file or folder, or a hub dataset.")]
RecipeOption = Annotated[Path | None, typer.Option("--recipe", "-r", show_default=False,
                                                   help="A recipe YAML with a finetune: section.")]
SeedsOption = Annotated[str | None, typer.Option("--seeds", show_default=False,
                                                 help="Comma-separated seeds, e.g. 1,2,3: one run each, metrics as mean ± std.")]
OverwriteFlag = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output folder (only once the new one is complete).")]
ResumeFlag = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from <output>.partial/ (its last checkpoint).")]


def command(
    model: ModelArg = None,
    task: TaskOption = None,
    recipe: RecipeOption = None,
    set_: SetOption = None,
    seeds: SeedsOption = None,
    output: OutputDir = None,
    overwrite: OverwriteFlag = False,
    resume: ResumeFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Fine-tune an encoder on a downstream task: a Hugging Face folder with id2label, tokenizer, metrics.json.

    Without --recipe the defaults of the finetune: recipe section apply; change them with --set
    (lr=3e-5 means finetune.lr=3e-5). The output folder is written whole or not at all; training
    checkpoints to <output>.partial/ every checkpoint_every steps and on SIGTERM, and --resume continues
    an interrupted run from there exactly.

    Example: minilm finetune zoo:all-minilm-l6-v2 --task zoo:rotten-tomatoes --seeds 1,2,3 --set epochs=2
    """
    from minilm_deploy.finetune import api

    rec = build_recipe(model, task, recipe, set_ or [])
    seed_list = parse_seeds(seeds)
    if seed_list:  # recorded in the saved recipe like any other override
        rec = replace(rec, finetune=replace(rec.finetune, seeds=tuple(seed_list)))
    if model is None:
        if recipe is None:
            raise InputError("give MODEL (a folder, zoo:NAME or hub id) or --recipe FILE")
        if output is not None:
            from minilm_deploy.recipe import with_output_dir

            rec = with_output_dir(rec, output)
        results = api.finetune_recipe(rec, overwrite=overwrite, resume=resume)
    else:
        results = [run_one(api, rec, model, recipe is not None, output, overwrite, resume)]
    emit(results[0] if len(results) == 1 else {"models": results}, as_json, "\n".join(summary(r) for r in results))


def run_one(api: Any, rec: Any, model: str, from_recipe: bool, output: Path | None, overwrite: bool, resume: bool) -> dict:
    ft = rec.finetune
    if from_recipe and model == "teacher":  # the teacher is the source of soft targets, never their user
        ft = replace(ft, distill=None)
    seeds = list(ft.seeds) or [rec.seed]
    spec = api.role_spec(rec, model) if from_recipe else model
    out = output or (api.role_output(rec, model) if from_recipe else default_output(model, ft.task))
    teacher = None
    if ft.distill is not None:
        teacher = Path(ft.distill.teacher) if ft.distill.teacher else (rec.run_dir / "teacher-task" if from_recipe else None)
    return api.finetune_model(spec, ft, out, seeds, record=rec if from_recipe else None, overwrite=overwrite,
                              label=Path(model).name, distill_teacher=teacher, resume=resume)


def build_recipe(model: str | None, task: str | None, path: Path | None, overrides: list[str]) -> Any:
    """The effective top-level recipe: from --recipe or the defaults, then --task and --set."""
    from minilm_deploy.config import deep_merge, load_yaml, parse_overrides
    from minilm_deploy.recipe import Recipe, recipe_from_dict

    top = {f.name for f in fields(Recipe)}
    keys = [o if o.partition("=")[0].split(".")[0] in top else f"finetune.{o}" for o in overrides]
    if path is not None:
        data, source = load_yaml(path), path.name
        if not isinstance(data.get("finetune"), dict):
            data = {**data, "finetune": {}}
    else:
        data, source = {"name": "finetune", "teacher": model or "", "finetune": {}}, "finetune options"
    data = deep_merge(data, parse_overrides(keys))
    if task:
        data = deep_merge(data, {"finetune": {"task": task}})
    return recipe_from_dict(data, source=source)


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--seeds {text!r}: expected comma-separated integers, e.g. --seeds 1,2,3") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"--seeds {text!r}: give one or more distinct integers, e.g. --seeds 1,2,3")
    return seeds


def default_output(model: str, task: str) -> Path:
    """A local folder X → X-task next to it; zoo/hub models → runs/<model>-<task>."""
    local = Path(model).expanduser()
    if local.is_dir():
        return local.parent / f"{local.name}-task"
    name = model.removeprefix("zoo:").replace("/", "-")
    task_name = Path(task.removeprefix("zoo:")).stem.replace("/", "-")
    return Path("runs") / f"{name}-{task_name}"


def summary(result: dict) -> str:
    """Human lines: where it went, each split's metrics as mean ± std over seeds, the time."""
    seeds = result["seeds"]
    lines = [f"fine-tuned {result['model']} on {result['task']} ({len(seeds)} seed(s): {','.join(map(str, seeds))}; "
             f"best on dev: seed {result['best_seed']}) -> {result['output']}"]
    for split, values in result["summary"].items():
        parts = [f"{name} {v['mean']:.4f} ± {v['std']:.4f}" if len(seeds) > 1 else f"{name} {v['mean']:.4f}" for name, v in values.items()]
        lines.append(f"  {split}: " + ", ".join(parts))
    lines.append(f"  train time {result['train_seconds']:.1f} s, wall {result['wall_seconds']:.1f} s")
    return "\n".join(lines)
