"""The TensorRT-ready graphs (issue 16): accuracy of the FP16 and Q/DQ INT8 graphs against fp32, and their
latency on ONNX Runtime CPU next to our CPU INT8, for all-MiniLM-L6-v2 and fine-tuned models.

    .venv/bin/python -m bench.trt_graphs                                   # the default models
    .venv/bin/python -m bench.trt_graphs --model teacher=runs/students/minilm-6x384-teacher-0/rotten-tomatoes-s1
    .venv/bin/python -m bench.trt_graphs --no-timing                       # exports and accuracy only

Each model is exported with `exporters/trt-fp16.yaml` and `exporters/trt-int8.yaml` (the graph whose own
types are the engine's precision, written to tensorrt/model.onnx and validated on the CPU before any engine)
and with `onnx-cpu-int8` (our CPU path), calibrated and task-checked on rotten-tomatoes. Reported per graph:
the worst token / sentence cosine to PyTorch on the validation batches, and for a fine-tuned model the task
check (agreement with PyTorch's predictions and accuracy on up to 2000 test sentences); then the p50 latency
on ONNX Runtime CPU (the runtime's session options, one thread) at batch 1 and 32 x 128 tokens. No engine
is built here (no GPU with TensorRT): the engine rows are left for a machine that has one.

Artifacts go to runs/trt_graphs/ (reused when present); figures to bench/results/trt_graphs/<cpu class>.json
and a table in bench/results/trt_graphs/README.md. Run the timing on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench import harness

RESULTS = harness.RESULTS / "trt_graphs"
WORK = harness.WORK / "trt_graphs"
TASK = "zoo:rotten-tomatoes"
MODELS = {  # name → model spec; the fine-tuned ones come from bench/students.py's runs
    "all-MiniLM-L6-v2": "zoo:all-minilm-l6-v2",
    "all-MiniLM-L6-v2 fine-tuned": "runs/students/minilm-6x384-teacher-0/rotten-tomatoes-s1",
    "3x384 c1-both 1M fine-tuned": "runs/students/3x384-c1-both-1M/rotten-tomatoes-s1",
}
PROFILES = ("trt-fp16", "trt-int8", "onnx-cpu-int8")
BATCHES = (1, 32)
SEQ = 128


def export(spec: str, profile: str, target: Path) -> dict[str, Any]:
    """The artifact (reused when present) and its manifest's figures; a graph that fails validation is a result."""
    from minilm_deploy.artifact import load_manifest
    from minilm_deploy.errors import MinilmError
    from minilm_deploy.export.build import export_model
    from minilm_deploy.export.profile import load_profile

    if not (target / "manifest.json").is_file():
        print(f"trt_graphs: exporting {spec} with {profile}", file=sys.stderr)
        try:
            export_model(spec, load_profile(profile), output=target, task=TASK)
        except MinilmError as exc:
            if not (target / "manifest.json").is_file():  # refused: nothing written, the reason is the figure
                return {"error": str(exc)}
            # "--trt: no GPU": the artifact, with its TensorRT-ready graph, is complete
    manifest = load_manifest(target)
    precision = "int8" if profile == "onnx-cpu-int8" else profile.removeprefix("trt-")
    check = manifest.validation.get("int8" if profile == "onnx-cpu-int8" else "tensorrt_graph", {})
    variant = precision if profile == "onnx-cpu-int8" else f"tensorrt-{precision}"
    task = (manifest.validation.get("task_check") or {}).get("variants", {}).get(variant)
    graph = target / ("model.onnx" if profile == "onnx-cpu-int8" else "tensorrt/model.onnx")
    return {"graph": str(graph), "fp32_graph": str(target / "model.onnx"), "precision": precision,
            "outputs": check.get("outputs"), "task_check": task,
            "accuracy_torch": (manifest.validation.get("task_check") or {}).get("accuracy_torch")}


def latency_ms(graph: Path, feeds_by_batch: dict[int, dict[str, np.ndarray]], threads: int) -> dict[str, float]:
    """p50 ms per batch size through ONNX Runtime CPU with the runtime's own session options."""
    from minilm_deploy.bench.suite import Timing
    from minilm_deploy.bench.timing import measure
    from minilm_deploy.export.validate import open_session

    session = open_session(graph, threads)
    out = {}
    for batch, feeds in feeds_by_batch.items():
        names = {i.name for i in session.get_inputs()}
        run_feeds = {k: v for k, v in feeds.items() if k in names}
        seconds = measure(lambda _i, f=run_feeds: session.run(None, f), Timing(warmup=3, min_iterations=10, min_duration_s=2.0))
        out[f"b{batch}x{SEQ}"] = float(np.median(seconds) * 1e3)
    return out


def feeds() -> dict[int, dict[str, np.ndarray]]:
    ids = np.full((1, SEQ), 1000, dtype=np.int64)
    ids[0, 0], ids[0, -1] = 101, 102
    return {b: {"input_ids": np.repeat(ids, b, 0), "attention_mask": np.ones((b, SEQ), np.int64),
                "token_type_ids": np.zeros((b, SEQ), np.int64)} for b in BATCHES}


def cell(value: float | None, fmt: str = "{:.4f}") -> str:
    return fmt.format(value) if value is not None else "–"


def table(record: dict[str, Any]) -> str:
    lines = ["| model | graph | worst token cosine | worst sentence cosine | task agreement | task accuracy (PyTorch) "
             "| ORT CPU b1×128 ms | ORT CPU b32×128 ms |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, rows in record["models"].items():
        for row_name, row in rows.items():
            if "error" in row:
                lines.append(f"| {name} | {row_name} | refused: {row['error'][:160]} | | | | | |")
                continue
            outputs = row.get("outputs") or {}
            token = (outputs.get("last_hidden_state") or {}).get("min_cosine")
            sentence = (outputs.get("sentence_embedding") or {}).get("min_cosine")
            task = row.get("task_check") or {}
            accuracy = (f"{task['accuracy']:.4f} ({row['accuracy_torch']:.4f})" if task.get("accuracy") is not None
                        and row.get("accuracy_torch") is not None else "–")
            times = row.get("latency_ms") or {}
            lines.append(f"| {name} | {row_name} | {cell(token)} | {cell(sentence)} | {cell(task.get('agreement'))} | "
                         f"{accuracy} | {cell(times.get(f'b1x{SEQ}'), '{:.2f}')} | {cell(times.get(f'b32x{SEQ}'), '{:.1f}')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], metavar="NAME=SPEC", help="instead of the defaults")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-timing", action="store_true", help="exports and accuracy only")
    args = parser.parse_args()
    from minilm_deploy.hardware import cpu_class, cpu_name

    models = dict(item.split("=", 1) for item in args.model) if args.model else MODELS
    record: dict[str, Any] = {"cpu": cpu_name(), "cpu_class": cpu_class(), "task": TASK, "threads": args.threads,
                              "models": {}, "engines": "none built: no GPU with TensorRT on this machine"}
    for name, spec in models.items():
        if not spec.startswith("zoo:") and not Path(spec).is_dir():
            print(f"trt_graphs: {name}: {spec} not found (run bench/students.py first); skipped", file=sys.stderr)
            continue
        slug = name.replace(" ", "-")
        rows = {profile: export(spec, profile, WORK / slug / profile) for profile in PROFILES}
        if not args.no_timing:
            batches = feeds()
            fp32 = next((r["fp32_graph"] for r in rows.values() if "fp32_graph" in r), None)
            timed = {"fp32 (ORT CPU)": {"graph": fp32, "precision": "fp32"}} if fp32 else {}
            for row in [*timed.values(), *rows.values()]:
                if "graph" in row:
                    row["latency_ms"] = latency_ms(Path(row["graph"]), batches, args.threads)
            rows = {**timed, **rows}
        record["models"][name] = rows
    harness.write_report(RESULTS / record["cpu_class"], record)
    header = (f"# TensorRT-ready graphs on the CPU ({record['cpu']}, {record['cpu_class']})\n\n"
              f"`python -m bench.trt_graphs --threads {args.threads}`: the FP16 and Q/DQ INT8 graphs "
              "(`tensorrt/model.onnx` of the trt-fp16 / trt-int8 exports) against PyTorch, and on ONNX Runtime CPU "
              "next to our CPU INT8 (`onnx-cpu-int8`); task: rotten-tomatoes test, up to 2000 sentences. "
              f"TensorRT engines: {record['engines']}.\n\n")
    harness.write_report(RESULTS / "README", markdown=header + table(record))
    print((RESULTS / "README.md").read_text())


if __name__ == "__main__":
    main()
