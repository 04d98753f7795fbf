"""`minilm bench`: Benchmark latency and accuracy of artifacts against a teacher, with CI gates."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from minilm_deploy.cli.options import JsonFlag, SetOption, emit
from minilm_deploy.errors import InputError
from minilm_deploy.sources import model_location


def command(
    artifacts: Annotated[list[str], typer.Argument(metavar="ARTIFACTS...", help="Artifacts or model folders to compare, each PATH or NAME=PATH.", show_default=False)],
    against: Annotated[str | None, typer.Option("--against", help="The teacher: a model folder, artifact, hub id or zoo:NAME; ratios are against it.", show_default=False)] = None,
    suite_file: Annotated[Path | None, typer.Option("--suite", help="A suite YAML, e.g. bench/quick.yaml (default: built-in defaults).", show_default=False)] = None,
    overrides: SetOption = None,
    task: Annotated[str | None, typer.Option("--task", help="Task for accuracy and real text lengths, e.g. zoo:rotten-tomatoes.", show_default=False)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Report folder (default: runs/bench/SUITE).", show_default=False)] = None,
    backend: Annotated[str | None, typer.Option(help="auto, torch, torch-bf16, onnxruntime, openvino or tensorrt (default: the suite's).", show_default=False)] = None,
    backends: Annotated[str | None, typer.Option(help="Compare backends side by side: each artifact once per backend, e.g. onnxruntime,openvino,torch.", show_default=False)] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: the suite's).", show_default=False)] = None,
    threads: Annotated[int | None, typer.Option(help="Intra-op threads (0: library default).", show_default=False)] = None,
    max_accuracy_drop: Annotated[float | None, typer.Option(help="Gate: fail if a candidate's metric is this much below the teacher's (0.01 = 1 point).", show_default=False)] = None,
    min_speedup: Annotated[float | None, typer.Option(help="Gate: fail if a candidate is less than this many times faster than the teacher.", show_default=False)] = None,
    baseline: Annotated[Path | None, typer.Option(help="Gate: a results.json to compare with (needs one of the three gates below).", show_default=False)] = None,
    max_regression: Annotated[float | None, typer.Option(help="Gate: fail if any p50 is more than PCT percent slower than the baseline's (same machine only).", metavar="PCT", show_default=False)] = None,
    max_speedup_loss: Annotated[float | None, typer.Option(help="Gate: fail if a candidate's speed-up over the teacher is more than PCT percent below the baseline's (any machine).", metavar="PCT", show_default=False)] = None,
    max_accuracy_loss: Annotated[float | None, typer.Option(help="Gate: fail if a candidate's metric is more than this below the baseline's (0.01 = 1 point).", show_default=False)] = None,
    as_json: JsonFlag = False,
) -> None:
    """Benchmark latency and accuracy of artifacts against a teacher, with CI gates.

    Writes results.json (one row per measurement; schema in results.schema.json), report.md and PNG
    plots. A failed gate exits 1 with one line naming the gate, the figure and the limit.

    Examples:

    \b
      minilm bench runs/quickstart/export --against zoo:all-minilm-l6-v2 --suite bench/quick.yaml \\
          --task zoo:rotten-tomatoes --min-speedup 1.5
      minilm bench runs/quickstart/export --backends onnxruntime,openvino,torch --task zoo:rotten-tomatoes
    """
    from minilm_deploy.bench.run import ModelSpec, per_backend, run_bench
    from minilm_deploy.bench.suite import load_suite, with_gates

    suite = load_suite(suite_file, overrides) if suite_file else _default_suite(overrides)
    try:
        changes = {k: v for k, v in {"task": task, "backend": backend, "device": device, "threads": threads}.items() if v is not None}
        suite = with_gates(replace(suite, **changes), max_accuracy_drop=max_accuracy_drop, min_speedup=min_speedup,
                           baseline=str(baseline) if baseline else None, max_regression_pct=max_regression,
                           max_speedup_loss_pct=max_speedup_loss, max_accuracy_loss=max_accuracy_loss)
    except ValueError as exc:
        hint = ("give a limit of 0 or more" if ">= 0" in str(exc) else
                "give --baseline FILE together with --max-regression, --max-speedup-loss or --max-accuracy-loss")
        raise InputError(f"{exc}: {hint}") from None
    if suite.device not in ("cpu", "cuda"):
        raise InputError(f"--device {suite.device!r}: choose cpu or cuda")
    if suite.gates.accuracy_gated() and not suite.task:
        raise InputError("an accuracy gate (--max-accuracy-drop / --max-accuracy-loss) needs --task T to measure accuracy on")
    for artifact in artifacts:  # before the teacher is loaded (seconds to minutes)
        path = _named(artifact)[1]
        if model_location(path)[0] == "missing":
            raise InputError(f"{path}: no such artifact or model folder; export one with `minilm export`")
    models = ([ModelSpec(_name(against), against, "teacher")] if against else []) + [ModelSpec(*_named(a)) for a in artifacts]
    if backends is not None:
        models = per_backend(models, [b.strip() for b in backends.split(",") if b.strip()])
    out = output or Path("runs/bench") / suite.name
    results = run_bench(models, suite, out)
    summary = {"output": str(out), "summary": results["summary"], "gates": results["gates"]}
    emit(summary, as_json, _human(results, out))


def _default_suite(overrides: list[str] | None):
    from minilm_deploy.bench.suite import BenchSuite
    from minilm_deploy.config import from_dict, parse_overrides

    return from_dict(BenchSuite, parse_overrides(overrides or []), source="--set")


def _name(spec: str) -> str:
    return spec.removeprefix("zoo:").rstrip("/").split("/")[-1] or spec


def _named(arg: str) -> tuple[str, str]:
    name, sep, path = arg.partition("=")
    if sep and name and path:
        return name, path
    return _name(arg), arg


def _human(results: dict, out: Path) -> str:
    lines = [f"report: {out}/report.md"]
    for s in results["summary"]:
        sp = f"{s['speedup']:.2f}x" if s["speedup"] is not None else "–"
        acc = f"{s['metric']} {s['accuracy']:.4f}" if s["accuracy"] is not None else "accuracy –"
        lines.append(f"  {s['model']:<28} {s['role']:<9} speed-up {sp:<7} {acc}")
    passed = [g for g in results["gates"] if g["passed"]]
    if results["gates"]:
        lines.append(f"gates: {len(passed)}/{len(results['gates'])} passed")
    return "\n".join(lines)
