"""`minilm eval`: evaluate a fine-tuned model on task splits (cross-lingual splits from a recipe)."""

from __future__ import annotations

from typing import Annotated

import typer

from minilm_deploy.cli.finetune import RecipeOption, TaskOption, build_recipe
from minilm_deploy.cli.options import JsonFlag, SetOption, emit
from minilm_deploy.errors import InputError

SplitOption = Annotated[
    list[str] | None,
    typer.Option("--split", "-s", show_default=False,
                 help="Split(s) to score, repeatable or comma-separated (default: test, or the recipe's eval_splits)."),
]
MaxLength = Annotated[int | None, typer.Option("--max-length", min=8, show_default=False,
                                               help="Truncation length (default: the one it was fine-tuned with).")]
COLUMN_KEYS = ("text_column", "pair_column", "label_column")
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Examples per forward pass.")]


def command(
    model: Annotated[str | None, typer.Argument(metavar="[MODEL]", show_default=False,
                                                help="A fine-tuned model folder (what `minilm finetune` writes), or a recipe role with --recipe.")] = None,
    task: TaskOption = None,
    split: SplitOption = None,
    recipe: RecipeOption = None,
    set_: SetOption = None,
    max_length: MaxLength = None,
    batch_size: BatchSize = 128,
    as_json: JsonFlag = False,
) -> None:
    """Evaluate a fine-tuned model: accuracy, macro-F1 and MCC (classification) or Pearson, Spearman and MSE (regression).

    With --recipe and no MODEL, every fine-tuned model of the recipe is scored on its eval_splits:
    train on English polarity, evaluate on French, Dutch and German in one command.

    Example: minilm eval runs/quickstart/student-task --task zoo:rotten-tomatoes --split test
    """
    from minilm_deploy.finetune import api

    splits = [s.strip() for item in split or [] for s in item.split(",") if s.strip()]
    if recipe is not None:
        rec = build_recipe(None, task, recipe, set_ or [])
        ft = api.require_section(rec)
        if model is None:
            results = api.evaluate_recipe(rec, splits or None)
        else:
            spec = str(api.role_output(rec, model)) if model in ("teacher", "student") else model
            results = [api.evaluate_model(spec, ft.task, splits or ft.eval_splits, max_length=max_length, batch_size=batch_size,
                                          columns=ft.task_columns())]
    else:
        if model is None:
            raise InputError("give MODEL (a fine-tuned model folder) or --recipe FILE")
        keys = {item.partition("=")[0].strip() for item in set_ or []}
        if keys - set(COLUMN_KEYS):
            raise InputError(f"--set without --recipe takes only {', '.join(COLUMN_KEYS)} (a local task's column names); "
                             "use --max-length/--batch-size to change evaluation")
        columns = build_recipe(model, task or "", None, set_).finetune.task_columns() if set_ else {}
        results = [api.evaluate_model(model, task, splits or ["test"], max_length=max_length, batch_size=batch_size,
                                      columns=columns)]
    emit(results[0] if len(results) == 1 else {"models": results}, as_json, "\n".join(map(human, results)))


def human(result: dict) -> str:
    lines = [f"{result['model']} on {result['task']} (max_length {result['max_length']}):"]
    for split, values in result["splits"].items():
        parts = ", ".join(f"{k} {v:.4f}" for k, v in values.items() if k != "n")
        lines.append(f"  {split} (n={values['n']}): {parts}")
    return "\n".join(lines)

