"""The deployment table (issue 8, item 4): every fine-tuned student against its fine-tuned teacher.

    .venv/bin/python -m bench.deployment --teacher runs/ablation/3x384/a/rotten-tomatoes-s1 \\
        STUDENT_DIR... --out bench/results/deployment/minilm   # a fine-tuned model folder each, NAME=DIR to name it
    .venv/bin/python -m bench.deployment ... --export-only      # the ONNX artifacts only (no timing: any machine)
    .venv/bin/python -m bench.deployment ... --profiles onnx-cpu-fp32,onnx-cpu-int8,openvino-cpu-fp32   # + OpenVINO

For each student: exported with the project's profiles (by default `onnx-cpu-fp32`, `onnx-cpu-int8`; `--profiles`
adds e.g. `openvino-cpu-fp32`, bf16 inference where the CPU has AMX; each validated on the task), then `minilm bench`'s machinery measures, one model per fresh process, one intra-op thread:
the teacher in PyTorch and its own ONNX fp32/INT8 exports (what quantisation alone gives), then every student;
latency at batch 1 and 32 × 128 tokens and at the task's real lengths (batch 1 and 32), and the task
accuracy on the whole test split. The table gives parameters, file sizes, latencies, the speed-up against
the teacher in PyTorch and the accuracy retained; deployment.png plots speed-up against accuracy retained.
Run it on an otherwise idle machine (export first with --export-only while the machine is busy).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import harness
from minilm_deploy.bench.run import ModelSpec, run_bench
from minilm_deploy.bench.suite import BenchSuite, Grid, Timing
from minilm_deploy.pipeline import saved_parameters

SUITE = BenchSuite(name="deployment", task="zoo:rotten-tomatoes", split="test", eval_limit=0,
                   grid=Grid(batch_sizes=(1, 32), seq_lens=(128,)), real_batch_size=32, real_samples=256,
                   timing=Timing(warmup=1, min_iterations=5, min_duration_s=1.0), threads=1)


PROFILES = ("onnx-cpu-fp32", "onnx-cpu-int8")  # the default exports of every model
# How each profile's rows are named (model name + suffix) and drawn; a row with no suffix is PyTorch.
# Markers: matplotlib's codes, each with the glyph the plot's title shows for it (MARKER_GLYPHS)
FORMATS = {"onnx-cpu-fp32": ("-onnx-fp32", "ONNX fp32", "s"), "onnx-cpu-int8": ("-onnx-int8", "ONNX INT8", "^"),
           "onnx-cpu-int8-attention": ("-onnx-int8-attention", "ONNX INT8 attention", "v"),
           "openvino-cpu-fp32": ("-openvino", "OpenVINO (bf16 where the CPU has it)", "D"),
           "openvino-cpu-int8": ("-openvino-int8", "OpenVINO INT8", "P"),
           "openvino-cpu-int8-smoothquant": ("-openvino-int8-smoothquant", "OpenVINO INT8+SQ", "X")}

MARKER_GLYPHS = {"o": "○", "s": "□", "^": "△", "v": "▽", "D": "◇", "P": "✚", "X": "✖"}


def export(name: str, model: Path, profile: str, out: Path, task: str) -> Path:
    from minilm_deploy.export.build import export_model
    from minilm_deploy.export.profile import load_profile

    folder = harness.WORK / "deployment" / out.name / f"{name}{FORMATS[profile][0]}"  # large: not committed
    if not (folder / "manifest.json").is_file() or exported_from(folder) != model.resolve():
        export_model(str(model), load_profile(profile), output=folder, task=task, overwrite=True)
    return folder


def row_format(model: str) -> tuple[str, str]:
    """(label, marker) of a row by its name's suffix: the longest suffix that matches, else PyTorch."""
    suffix = max((f for f in FORMATS.values() if model.endswith(f[0])), key=lambda f: len(f[0]), default=None)
    return (suffix[1], suffix[2]) if suffix else ("PyTorch", "o")


def exported_from(folder: Path) -> Path:
    return Path(json.loads((folder / "manifest.json").read_text())["source"]["path"]).resolve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("students", nargs="+", metavar="[NAME=]DIR")
    parser.add_argument("--teacher", type=Path, required=True, help="the fine-tuned teacher (PyTorch is the reference)")
    parser.add_argument("--task", default=SUITE.task)
    parser.add_argument("--split", default=SUITE.split, help="the split scored and drawn from for real lengths")
    parser.add_argument("--eval-limit", type=int, default=SUITE.eval_limit, help="examples scored (0: the whole split)")
    parser.add_argument("--export-only", action="store_true", help="write the ONNX artifacts and stop (no timing)")
    parser.add_argument("--profiles", default=",".join(PROFILES),
                        help=f"export profiles of every model, comma-separated (default {','.join(PROFILES)}; known: "
                             f"{', '.join(FORMATS)})")
    parser.add_argument("--out", type=Path, default=harness.RESULTS / "deployment")
    args = parser.parse_args()
    named = [(s.split("=", 1) if "=" in s else (Path(s).parent.name, s)) for s in args.students]
    if len({n for n, _ in named} | {"teacher"}) != len(named) + 1:
        parser.error("every student needs its own name (NAME=DIR), and none may be called 'teacher'")
    profiles = args.profiles.split(",")
    if unknown := [p for p in profiles if p not in FORMATS]:
        parser.error(f"unknown profile {unknown[0]!r}; known: {', '.join(FORMATS)}")
    from minilm_deploy.errors import ValidationFailed

    models = [ModelSpec("teacher", str(args.teacher), "teacher")]
    rejected: dict[str, str] = {}  # an export its own validation refused: no row, the reason in the report
    for name, folder in [("teacher", str(args.teacher)), *named]:
        models += [] if name == "teacher" else [ModelSpec(name, folder, "candidate")]
        for profile in profiles:
            row = f"{name}{FORMATS[profile][0]}"
            try:
                models.append(ModelSpec(row, str(export(name, Path(folder), profile, args.out, args.task)), "candidate"))
            except ValidationFailed as failure:
                rejected[row] = str(failure)
                print(f"deployment: {row} rejected by its validation: {failure}", file=sys.stderr)
    if args.export_only:
        return
    suite = replace(SUITE, task=args.task, split=args.split, eval_limit=args.eval_limit)
    main_run = run_bench(models, suite, args.out / "b32")
    single = run_bench(models, replace(suite, grid=Grid(batch_sizes=(1,), seq_lens=(128,)), real_batch_size=1, real_samples=128,
                                       eval_limit=1), args.out / "b1-real")
    table = write_table(main_run, single, models, args.out, command=" ".join([".venv/bin/python -m bench.deployment", *sys.argv[1:]]),
                        rejected=rejected)
    print(table)


def write_table(main_run: dict[str, Any], single: dict[str, Any], models: list[ModelSpec], out: Path, command: str = "",
                rejected: dict[str, str] | None = None) -> str:
    def latency(results: dict[str, Any], model: str, mode: str, batch: int) -> float | None:
        return next((r["latency_ms"]["p50"] for r in results["rows"] if r["kind"] == "latency" and r["model"] == model
                     and r["mode"] == mode and r["batch_size"] == batch), None)

    summary = {s["model"]: s for s in main_run["summary"]}
    info = {m["name"]: m for m in main_run["models"]}
    teacher_b1 = latency(main_run, "teacher", "grid", 1)
    teacher_acc = summary["teacher"]["accuracy"]
    head = ("| model | parameters | file MB | b1×128 ms | b32×128 ms | b1 real ms | b32 real ms | speed-up b1×128 vs teacher "
            "| accuracy | retained |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rows = []
    for spec in models:
        folder = Path(spec.path)
        b1 = latency(main_run, spec.name, "grid", 1)
        row = {"model": spec.name, "parameters": saved_parameters(folder),
               "file_mb": info[spec.name]["file_size_bytes"] / 1e6, "b1_s128_ms": b1,
               "b32_s128_ms": latency(main_run, spec.name, "grid", 32), "b1_real_ms": latency(single, spec.name, "real", 1),
               "b32_real_ms": latency(main_run, spec.name, "real", 32),
               "speedup_b1": teacher_b1 / b1 if b1 and teacher_b1 else None, "accuracy": summary[spec.name]["accuracy"]}
        row["retained"] = row["accuracy"] / teacher_acc if row["accuracy"] is not None and teacher_acc else None
        rows.append(row)
        fmt = lambda v, p: "–" if v is None else p.format(v)  # noqa: E731
        lines.append(f"| {spec.name} | {fmt(row['parameters'], '{:,}')} | {row['file_mb']:.1f} | {fmt(b1, '{:.2f}')} | "
                     f"{fmt(row['b32_s128_ms'], '{:.1f}')} | {fmt(row['b1_real_ms'], '{:.2f}')} | {fmt(row['b32_real_ms'], '{:.1f}')} | "
                     f"{fmt(row['speedup_b1'], '{:.2f}x')} | {fmt(row['accuracy'], '{:.4f}')} | {fmt(row['retained'], '{:.1%}')} |")
    table = "\n".join(lines)
    refused = "".join(f"\n- {row}: rejected by its export's validation, not timed: {why}" for row, why in (rejected or {}).items())
    harness.write_report(out / "deployment", {"environment": main_run["environment"], "rows": rows, "rejected": rejected or {}},
                         f"CPU: {main_run['environment']['cpu']} ({main_run['environment'].get('cpu_class')}), "
                         f"1 intra-op thread. Command: `{command}`\n\n{table}\n{refused}\n", indent=2)
    plot(rows, out / "deployment.png")
    return table


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Speed-up at batch 1 × 128 against the teacher in PyTorch (log x) and accuracy retained, one point per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if r["speedup_b1"] and r["retained"] is not None]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for r in points:
        fmt, marker = row_format(r["model"])
        ax.scatter(r["speedup_b1"], 100 * r["retained"], marker=marker,
                   color="#444444" if r["model"].startswith("teacher") else "#1f77b4")
        if fmt == "PyTorch":  # one label per model: the marker tells the format
            ax.annotate(r["model"], (r["speedup_b1"], 100 * r["retained"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlim(0.8, 2 * max(r["speedup_b1"] for r in points))
    ax.set_xlabel("speed-up vs the teacher in PyTorch (batch 1 × 128, 1 thread; log scale)")
    ax.set_ylabel("task accuracy retained (%)")
    shown = dict.fromkeys(row_format(r["model"]) for r in points)
    ax.set_title("Deployment: " + "  ".join(f"{MARKER_GLYPHS[m]} {label}" for label, m in shown), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
