"""`minilm run`: distill → finetune (teacher and student) → export → bench, from one recipe.

Every stage writes into the recipe's run directory, atomically; a stage whose output is already
complete is skipped, so a second `minilm run` on the same recipe continues where the first one
stopped (distillation and fine-tuning resume from their last checkpoints). Before any work starts, the
recipe is checked as a whole: the teacher exists, the student fits it, the task exists.

    runs/<name>/
      student/          distilled encoder (HF folder, run.json)
      teacher-task/     fine-tuned teacher (the reference)
      student-task/     fine-tuned student
      export/           ONNX artifact of the student (manifest.json, triton/, ...)
      bench/            results.json, report.md, plots
      summary.json      the final table
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from minilm_deploy.errors import InputError
from minilm_deploy.paths import atomic_write_text
from minilm_deploy.recipe import Recipe, save_recipe

SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class Stage:
    name: str
    enabled: Callable[[Recipe], bool]
    done: Callable[[Recipe], bool]
    run: Callable[[Recipe], Any]


# ----------------------------------------------------------------------------- where outputs live

def student_dir(recipe: Recipe) -> Path:
    return recipe.run_dir / "student"


def task_dir(recipe: Recipe, role: str) -> Path:
    from minilm_deploy.finetune.api import role_output

    return role_output(recipe, role)


def export_dir(recipe: Recipe) -> Path:
    return recipe.run_dir / "export"


def bench_dir(recipe: Recipe) -> Path:
    return recipe.run_dir / "bench"


def exported_model(recipe: Recipe) -> Path:
    """What the export stage exports: the fine-tuned student if there is one, else the encoder."""
    if recipe.finetune is not None and "student" in recipe.finetune.models:
        return task_dir(recipe, "student")
    return student_dir(recipe)


# ----------------------------------------------------------------------------- the stages

def _distill_done(recipe: Recipe) -> bool:
    return (student_dir(recipe) / "run.json").is_file()


def _distill(recipe: Recipe) -> Any:
    from minilm_deploy.distill.pipeline import run_distill

    return run_distill(recipe, resume=True)


def _finetune_roles_left(recipe: Recipe) -> tuple[str, ...]:
    assert recipe.finetune is not None
    return tuple(r for r in recipe.finetune.models if not (task_dir(recipe, r) / "metrics.json").is_file())


def _finetune(recipe: Recipe) -> Any:
    from minilm_deploy.finetune.api import finetune_recipe

    assert recipe.finetune is not None
    left = _finetune_roles_left(recipe)
    return finetune_recipe(replace(recipe, finetune=replace(recipe.finetune, models=left)), resume=True)


def _export_done(recipe: Recipe) -> bool:
    from minilm_deploy.artifact import load_manifest, verify_files
    from minilm_deploy.errors import MinilmError

    folder = export_dir(recipe)
    if not (folder / "manifest.json").is_file():
        return False
    try:
        verify_files(folder, load_manifest(folder))
    except MinilmError:
        return False
    return True


def _export(recipe: Recipe) -> Any:
    from minilm_deploy.export.build import export_model

    assert recipe.export is not None
    task = recipe.finetune.task if recipe.finetune is not None else None
    if recipe.export == "auto":
        from minilm_deploy.export.auto import export_auto

        return export_auto(str(exported_model(recipe)), output=export_dir(recipe), task=task, overwrite=True)
    return export_model(str(exported_model(recipe)), recipe.export, output=export_dir(recipe), task=task, overwrite=True)


def _bench_done(recipe: Recipe) -> bool:
    return (bench_dir(recipe) / "results.json").is_file()


def bench_models(recipe: Recipe) -> list[Any]:
    """The teacher (PyTorch) against the student in PyTorch and as the exported artifact."""
    from minilm_deploy.bench.run import ModelSpec

    tuned_teacher = recipe.finetune is not None and "teacher" in recipe.finetune.models
    teacher = str(task_dir(recipe, "teacher")) if tuned_teacher else recipe.teacher
    models = [ModelSpec("teacher", teacher, "teacher"), ModelSpec("student", str(exported_model(recipe)), "candidate")]
    if recipe.export == "auto":
        models.append(ModelSpec("student-auto", str(export_dir(recipe)), "candidate"))
    elif recipe.export is not None:
        models.append(ModelSpec(f"student-onnx-{recipe.export.precision}", str(export_dir(recipe)), "candidate"))
    return models


def _bench(recipe: Recipe) -> Any:
    from minilm_deploy.bench.run import run_bench

    assert recipe.bench is not None
    suite = recipe.bench
    if suite.task is None and recipe.finetune is not None:
        suite = replace(suite, task=recipe.finetune.task)
    return run_bench(bench_models(recipe), suite, bench_dir(recipe))


STAGES: tuple[Stage, ...] = (
    Stage("distill", lambda r: r.distill is not None, _distill_done, _distill),
    Stage("finetune", lambda r: r.finetune is not None, lambda r: not _finetune_roles_left(r), _finetune),
    Stage("export", lambda r: r.export is not None, _export_done, _export),
    Stage("bench", lambda r: r.bench is not None, _bench_done, _bench),
)


# ----------------------------------------------------------------------------- checks before any work

def preflight(recipe: Recipe) -> None:
    """Refuse a recipe whose stages do not fit together, before anything is trained or written."""
    if not any(stage.enabled(recipe) for stage in STAGES):
        raise InputError(f"recipe {recipe.name!r} has no stage sections (distill, finetune, export, bench); "
                         "see recipes/quickstart.yaml")
    if recipe.distill is not None:
        _check_student_fits(recipe)
    elif recipe.finetune is not None and "student" in recipe.finetune.models and not _distill_done(recipe):
        raise InputError(f"finetune.models names the student, but the recipe has no distill: section and "
                         f"{student_dir(recipe)} does not exist; add distill: or fine-tune a model folder")
    if recipe.finetune is not None:
        _check_task(recipe.finetune.task, recipe.finetune.eval_splits)
    if recipe.bench is not None and recipe.bench.task is not None:
        _check_task(recipe.bench.task, (recipe.bench.split,))


def _check_student_fits(recipe: Recipe) -> None:
    """The distill stage's own rules (`distill.fit.check_fits`), on the teacher's config alone."""
    from minilm_deploy.distill.fit import check_fits
    from minilm_deploy.models.loading import load_config
    from minilm_deploy.sources import resolve_model

    assert recipe.distill is not None
    check_fits(recipe.distill, load_config(resolve_model(recipe.teacher)))


def _check_task(spec: str, splits: tuple[str, ...]) -> None:
    from minilm_deploy.sources import load_task

    task = load_task(spec)
    missing = [s for s in splits if s not in task.splits]
    if missing:
        raise InputError(f"task {spec} has no split(s) {', '.join(missing)}; it has {', '.join(task.splits)}")


# ----------------------------------------------------------------------------- running and the summary

def run_pipeline(recipe: Recipe, *, on_stage: Callable[[str, str], None] | None = None) -> dict[str, Any]:
    """Run every enabled stage that is not complete yet; return the summary (also in summary.json)."""
    preflight(recipe)
    recipe.run_dir.mkdir(parents=True, exist_ok=True)
    save_recipe(recipe, recipe.run_dir)
    timings: dict[str, float | None] = {}
    for stage in STAGES:
        if not stage.enabled(recipe):
            continue
        if stage.done(recipe):
            timings[stage.name] = None
            if on_stage:
                on_stage(stage.name, "skipped (already complete)")
            continue
        if on_stage:
            on_stage(stage.name, "running")
        started = time.perf_counter()
        stage.run(recipe)
        timings[stage.name] = round(time.perf_counter() - started, 1)
        if on_stage:
            on_stage(stage.name, f"done in {timings[stage.name]:.0f} s")
    summary = build_summary(recipe)
    summary["stage_seconds"] = timings
    atomic_write_text(recipe.run_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return summary


def saved_parameters(folder: Path) -> int | None:
    from safetensors import safe_open

    weights = folder / "model.safetensors"
    if not weights.is_file():
        return None
    total = 0
    with safe_open(str(weights), framework="np") as handle:
        for key in handle.keys():
            shape = handle.get_slice(key).get_shape()
            count = 1
            for dim in shape:
                count *= int(dim)
            total += count
    return total


def build_summary(recipe: Recipe) -> dict[str, Any]:
    """Teacher against student: parameters, file size, latency, speed-up, accuracy, retained."""
    rows: list[dict[str, Any]] = []
    bench = _read_json(bench_dir(recipe) / "results.json")
    bench_rows = {row["model"]: row for row in (bench or {}).get("summary", [])}
    bench_models_info = {m["name"]: m for m in (bench or {}).get("models", [])}
    latency = _latency_b1(bench) if bench else {}
    teacher_accuracy = None
    for spec in bench_models(recipe) if recipe.bench is not None else []:
        info = bench_models_info.get(spec.name, {})
        line = bench_rows.get(spec.name, {})
        folder = Path(spec.path)
        row = {
            "model": spec.name, "path": spec.path,
            "parameters": saved_parameters(folder) if folder.is_dir() else None,
            "file_size_mb": round(info["file_size_bytes"] / 1e6, 1) if info.get("file_size_bytes") else None,
            "latency_ms_b1": latency.get(spec.name), "speedup": line.get("speedup"),
            "metric": line.get("metric"), "accuracy": line.get("accuracy"),
        }
        if spec.role == "teacher":
            teacher_accuracy = row["accuracy"]
        rows.append(row)
    for row in rows:
        acc = row["accuracy"]
        row["retained"] = acc / teacher_accuracy if acc is not None and teacher_accuracy else None
    return {"recipe": recipe.name, "run_dir": str(recipe.run_dir), "rows": rows, "gates": (bench or {}).get("gates", []),
            "finetune": {role: _task_metric(recipe, role) for role in (recipe.finetune.models if recipe.finetune else ())}}


def _latency_b1(bench: dict[str, Any]) -> dict[str, float]:
    """p50 latency at batch 1 and the longest grid sequence, per model."""
    grid = [r for r in bench["rows"] if r["kind"] == "latency" and r["mode"] == "grid" and r["batch_size"] == 1]
    longest = max((r["seq_len"] for r in grid), default=None)
    return {r["model"]: r["latency_ms"]["p50"] for r in grid if r["seq_len"] == longest}


def _task_metric(recipe: Recipe, role: str) -> dict[str, Any] | None:
    metrics = _read_json(task_dir(recipe, role) / "metrics.json")
    if metrics is None:
        return None
    return {"metric": metrics.get("metric"), "splits": metrics.get("splits"), "train_seconds": metrics.get("train_seconds")}


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def summary_table(summary: dict[str, Any]) -> str:
    """The final table as Markdown."""
    head = "| model | parameters | file MB | p50 ms (b=1) | speed-up (grid) | accuracy | retained |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|"]

    def fmt(value: Any, pattern: str) -> str:
        return "–" if value is None else pattern.format(value)

    for r in summary["rows"]:
        lines.append(
            f"| {r['model']} | {fmt(r['parameters'], '{:,}')} | {fmt(r['file_size_mb'], '{:.1f}')} | "
            f"{fmt(r['latency_ms_b1'], '{:.2f}')} | {fmt(r['speedup'], '{:.2f}x')} | {fmt(r['accuracy'], '{:.4f}')} | "
            f"{fmt(r['retained'], '{:.1%}')} |"
        )
    lines += ["", "speed-up (grid): the geometric mean, over the bench grid's batch sizes and lengths, of the teacher's "
                  "p50 latency over the model's (the run's bench/report.md has each)"]
    gates = summary.get("gates") or []
    if gates:
        passed = sum(g["passed"] and not g.get("skipped") for g in gates)
        lines += ["", f"gates: {passed} of {len(gates)} passed"]
        lines += [f"  {'skip' if g.get('skipped') else 'ok  ' if g['passed'] else 'FAIL'} {g['message']}" for g in gates]
    return "\n".join(lines)
