"""`minilm run`: the whole path (distill, finetune, export, bench) from one recipe, resumable."""

from __future__ import annotations

import sys

from minilm_deploy.cli.options import JsonFlag, OutputDir, RecipePath, SetOption, emit
from minilm_deploy.recipe import load_recipe, with_output_dir


def command(recipe: RecipePath, set_: SetOption = None, output: OutputDir = None, as_json: JsonFlag = False) -> None:
    """Run distill → finetune (teacher and student) → export → bench from one recipe.

    Each stage writes into the run directory (runs/<name>, or --output); stages already complete
    are skipped, so running the same command again after an interruption resumes. The recipe is
    checked as a whole before any work starts.

    Example: minilm run recipes/quickstart.yaml --set distill.train.steps=200
    """
    from minilm_deploy.pipeline import run_pipeline, summary_table

    loaded = with_output_dir(load_recipe(recipe, set_ or []), output)

    def report(stage: str, status: str) -> None:
        sys.stderr.write(f"minilm run: {stage}: {status}\n")
        sys.stderr.flush()

    summary = run_pipeline(loaded, on_stage=report)
    human = f"{summary_table(summary)}\n\nrun directory: {summary['run_dir']}"
    emit(summary, as_json, human=human)
