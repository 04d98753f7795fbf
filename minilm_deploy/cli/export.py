"""`minilm export`: Export a model folder to a validated ONNX artifact (and a TensorRT engine with --trt)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minilm_deploy.cli.options import JsonFlag, emit
from minilm_deploy.errors import InputError


def command(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Model folder, hub id or zoo:NAME.", show_default=False)],
    profile: Annotated[Path | None, typer.Option("--profile", "-p", help="Export profile YAML, a name in exporters/, or auto (build every CPU path, keep the fastest that validates). Default: onnx-cpu-fp32.", show_default=False)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Artifact directory (default: artifacts/<model>-<profile>).", show_default=False)] = None,
    trt: Annotated[bool, typer.Option("--trt", help="Also build a TensorRT engine (needs an NVIDIA GPU and tensorrt).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="INT8 (the engine's with --trt, else model.onnx's).")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16 (the engine's with --trt, else model.onnx's).")] = False,
    task: Annotated[str | None, typer.Option("--task", help="Task for the task-level check and calibration, e.g. zoo:rotten-tomatoes.", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing artifact directory.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Export a model folder to a validated ONNX artifact (and a TensorRT engine with --trt).

    Examples:

    \b
      minilm export runs/quickstart/student-task --profile exporters/onnx-cpu-int8.yaml
      minilm export runs/quickstart/student-task --profile auto --task zoo:rotten-tomatoes   # measure, then pick
    """
    from minilm_deploy.export.build import export_model
    from minilm_deploy.export.profile import ExportProfile, load_profile, with_overrides

    if int8 and fp16:
        raise InputError("--int8 and --fp16 exclude each other; give one")
    if profile is not None and str(profile) == "auto":
        if trt or int8 or fp16:
            raise InputError("--profile auto picks the precision itself; drop --trt/--int8/--fp16")
        from minilm_deploy.export.auto import export_auto

        result = export_auto(model, output=output, task=task, overwrite=overwrite)
        emit(result, as_json, f"exported {result['task']} model → {result['output']}: {result['auto']['reason']}")
        return
    chosen = load_profile(profile) if profile else ExportProfile()
    chosen = with_overrides(chosen, precision="int8" if int8 else "fp16" if fp16 else None, trt=trt)
    result = export_model(model, chosen, output=output, task=task, overwrite=overwrite)
    emit(result, as_json, human_summary(result))


def human_summary(result: dict) -> str:
    ir = result.get("openvino")
    kind = f"{result['precision']} ONNX + OpenVINO {ir['precision']} IR" if ir else result["precision"]
    lines = [f"exported {result['task']} model → {result['output']} ({kind})"]
    for name, figures in result["validation"].items():
        if name == "task_check":
            if "skipped" in figures:
                lines.append(f"  task check skipped: {figures['skipped']}")
            for variant, f in figures.get("variants", {}).items():
                lines.append(f"  task {figures['task']}/{figures['split']}: {variant} agreement {f['agreement']:.2%}, "
                             f"accuracy {f['accuracy']:.2%} (PyTorch {figures['accuracy_torch']:.2%})")
            continue
        if "outputs" not in figures:
            continue
        parts = [f"{out} max|Δ| {f['max_abs_diff']:.2e}" + (f", min cos {f['min_cosine']:.5f}" if f["min_cosine"] is not None else "")
                 for out, f in figures["outputs"].items()]
        lines.append(f"  {name}: " + "; ".join(parts))
    opt = result["optimization"]
    lines.append(f"  graph: {opt['kept']}" + (f" (fusions {opt['fusions']})" if opt.get("fusions") else ""))
    sizes = ", ".join(f"{name} {v['bytes'] / 2**20:.1f} MiB" for name, v in result["variants"].items())
    lines.append(f"  sizes: {sizes}")
    checked = result["validation"].get("triton", {}).get("checked")
    lines.append(f"  triton model: {result['triton_model']}" + (" (config parsed with Triton's schema)" if checked else ""))
    return "\n".join(lines)
