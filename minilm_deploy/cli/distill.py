"""`minilm distill`: distil a student from a teacher (MiniLM deep self-attention distillation)."""

from __future__ import annotations

from typing import Annotated

import typer

from minilm_deploy.cli.options import JsonFlag, OutputDir, RecipePath, SetOption, emit


def command(
    recipe: RecipePath,
    overrides: SetOption = None,
    output: OutputDir = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its last checkpoint.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Distil a student from the recipe's teacher (MiniLM self-attention distillation).

    Writes a Hugging Face folder (default <run_dir>/student) with the tokenizer, run.json and
    metrics.jsonl; teacher-assistant stages, if the recipe names any, run first. `--resume`
    continues from the newest checkpoint. Several processes (DDP):
    `torchrun --nproc_per_node N -m minilm_deploy.distill RECIPE [options]`.

    Examples:

    \b
      minilm distill recipes/quickstart.yaml --set distill.train.steps=50
      minilm distill recipes/quickstart.yaml --set distill.loss.weights.hidden=0   # relations only (the paper)
      minilm distill recipes/quickstart.yaml --set distill.train.steps=0           # the layer copy, untrained
    """
    from minilm_deploy.distill.pipeline import run_distill
    from minilm_deploy.recipe import load_recipe

    loaded = load_recipe(recipe, overrides or [])
    result = run_distill(loaded, output=output, resume=resume)
    final = result["final"]
    human = f"student written to {result['student']} (final loss {final.get('loss', float('nan')):.4f})"
    emit(result, as_json, human)
