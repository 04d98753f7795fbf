"""`run_bench`: measure the teacher and each candidate, compare, gate, and write the report.

    results = run_bench([ModelSpec("teacher", "zoo:all-minilm-l6-v2", "teacher"),
                         ModelSpec("student-int8", "runs/q/export", "candidate")], suite, Path("runs/bench"))

Each model is measured in a fresh process (`suite.isolate`), one after the other, so its peak
memory is its own and no model's threads disturb another's timings. The output folder appears
whole or not at all; when a gate fails the report is still written, then `GateFailed` is raised.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from minilm_deploy.bench import compare, report
from minilm_deploy.bench.accuracy import eval_examples, evaluate
from minilm_deploy.bench.schema import RESULTS_SCHEMA, SCHEMA_VERSION, validate_results
from minilm_deploy.bench.suite import BenchSuite
from minilm_deploy.bench.timing import clock_for, cycling, measure, peak_memory_mb, reset_peak_memory, summarize
from minilm_deploy.config import to_dict
from minilm_deploy.data.types import Example, TaskData
from minilm_deploy.errors import InputError, MinilmError
from minilm_deploy.hardware import cpu_class, cpu_name
from minilm_deploy.paths import atomic_directory


class GateFailed(MinilmError):
    """A CI gate failed (exit 1); the message names the gate, the figure and the limit."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: str  # an artifact or model folder, or zoo:NAME / a hub id for a Hugging Face model
    role: str = "candidate"  # "teacher" | "candidate"
    backend: str | None = None  # None: the suite's backend


def per_backend(specs: list[ModelSpec], backends: list[str]) -> list[ModelSpec]:
    """Each candidate once per backend, named NAME@BACKEND (`minilm bench ART --backends onnxruntime,openvino`);
    the teacher stays as it is, so every row is compared with the same reference in one run."""
    from minilm_deploy.runtime.backends import BACKENDS

    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends or len(set(backends)) != len(backends):
        raise InputError(f"--backends {','.join(backends)}: give distinct names from {', '.join(BACKENDS)}")
    return [s for spec in specs for s in ([spec] if spec.role == "teacher" else
                                          [ModelSpec(f"{spec.name}@{b}", spec.path, spec.role, b) for b in backends])]


def run_bench(models: list[ModelSpec], suite: BenchSuite, output: Path, task: TaskData | None = None) -> dict[str, Any]:
    _check_names(models)
    if task is None and suite.task:
        from minilm_deploy.sources import load_task

        task = load_task(suite.task)
    baseline = load_baseline(baseline_for(Path(suite.gates.baseline), cpu_class())) if suite.gates.baseline else None
    examples = eval_examples(task, suite.split, suite.eval_limit, suite.seed) if task else None
    measured = [_measure(spec, suite, task, examples) for spec in models]
    results = assemble(measured, suite, task)
    results["gates"] = compare.check_gates(results, suite.gates, baseline)
    validate_results(results)
    write_report(results, Path(output))
    line = compare.failure_line(results["gates"])
    if line:
        raise GateFailed(f"{line}; report in {output}")
    return results


def baseline_for(path: Path, cpu: str) -> Path:
    """The baseline recorded on a CPU of class `cpu`, beside `path` (`<stem>-<class>.json`), if there is one; else
    `path` itself (whose speed-ups the gates then compare only if it too was measured on this class)."""
    own = path.with_name(f"{path.stem}-{cpu}{path.suffix}")
    return own if own.is_file() else path


def load_baseline(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"--baseline {path}: no such file; give a results.json from an earlier `minilm bench`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"--baseline {path}: not valid JSON ({exc})") from None
    validate_results(data, source=str(path))
    return data


def assemble(measured: list[dict[str, Any]], suite: BenchSuite, task: TaskData | None) -> dict[str, Any]:
    teacher = next((m["model"]["name"] for m in measured if m["model"]["role"] == "teacher"), None)
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "suite": to_dict(suite), "environment": environment(), "teacher": teacher,
        "task": None if task is None else {"name": task.name, "kind": task.kind, "split": suite.split},
        "models": [m["model"] for m in measured], "rows": [r for m in measured for r in m["rows"]],
    }
    results["summary"] = compare.summarize(results)
    return results


def write_report(results: dict[str, Any], output: Path) -> None:
    with atomic_directory(output, overwrite=True) as tmp:
        plots = report.plot_all(results, tmp)
        (tmp / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        (tmp / "results.schema.json").write_text(json.dumps(RESULTS_SCHEMA, indent=2) + "\n", encoding="utf-8")
        (tmp / "report.md").write_text(report.markdown(results, plots), encoding="utf-8")


def environment() -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for name in ("minilm-deploy", "torch", "transformers", "onnxruntime", "onnxruntime-gpu", "tensorrt", "numpy"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return {"cpu": cpu_name(), "cpu_class": cpu_class(), "cores": os.cpu_count() or 0, "python": sys.version.split()[0],
            "platform": platform.platform(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "versions": versions}


def _check_names(models: list[ModelSpec]) -> None:
    if not models:
        raise InputError("nothing to benchmark; give at least one artifact")
    names = [m.name for m in models]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise InputError(f"two models are named {dup!r}; name them apart with NAME=PATH")
    if sum(m.role == "teacher" for m in models) > 1:
        raise InputError("more than one teacher; give one --against")


def _measure(spec: ModelSpec, suite: BenchSuite, task: TaskData | None, examples: tuple[Example, ...] | None) -> dict[str, Any]:
    if not suite.isolate:
        return measure_model(spec, suite, task, examples)
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # a fresh interpreter per model
        measured = pool.apply(measure_model, (spec, suite, task, examples))
        pool.close()  # let the worker exit on its own (terminating it leaks its semaphores: a warning at exit)
        pool.join()
    return measured


def measure_model(spec: ModelSpec, suite: BenchSuite, task: TaskData | None, examples: tuple[Example, ...] | None) -> dict[str, Any]:
    """Everything measured for one model: its description, latency rows, accuracy row."""
    from minilm_deploy.runtime import Predictor

    scoped = reset_peak_memory()
    path = _resolve(spec.path)
    started = time.perf_counter()
    predictor = Predictor.load(path, backend=spec.backend or suite.backend, device=suite.device,
                               threads=suite.threads or None)
    load_s = time.perf_counter() - started
    try:
        rows = grid_rows(spec.name, predictor, suite)
        if examples and suite.real_batch_size and suite.real_samples:
            rows.append(real_row(spec.name, predictor, suite, examples))
        acc = evaluate(predictor, task, examples, suite.probe_train_limit, suite.seed) if task and examples else None
        model = {
            "name": spec.name, "role": spec.role, "path": str(spec.path), "backend": predictor.info["backend"],
            "device": suite.device, "precision": predictor.info["precision"], "task": predictor.task,
            "file_size_bytes": predictor.source.file_size_bytes(predictor.info["backend"]), "load_s": load_s,
            "peak_rss_mb": peak_memory_mb(), "peak_rss_scope": "model" if scoped and suite.isolate else "process",
            "max_length": predictor.max_length, "info": {k: v for k, v in predictor.info.items() if k != "path"},
        }
        if acc is not None and "value" in acc:
            rows.append({"model": spec.name, "kind": "accuracy", "split": suite.split, **acc})
        elif acc is not None:
            model["accuracy_note"] = acc["reason"]
        return {"model": model, "rows": rows}
    finally:
        predictor.close()


def _resolve(spec: str) -> Path:
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    from minilm_deploy.sources import resolve_model

    return resolve_model(spec)


def grid_rows(name: str, predictor: Any, suite: BenchSuite) -> list[dict[str, Any]]:
    clock, rows = clock_for(suite.device), []
    for seq in suite.grid.seq_lens:
        if seq > predictor.max_length:
            continue  # longer than the model takes: not a measurement
        for batch in suite.grid.batch_sizes:
            feeds = predictor.synthetic_feeds(batch, seq, seed=suite.seed)
            seconds = measure(cycling(predictor.infer, [feeds]), suite.timing, clock)
            rows.append({"model": name, "kind": "latency", "mode": "grid", "batch_size": batch, "seq_len": seq,
                         "mean_tokens": float(seq), **summarize(seconds, batch, batch * seq)})
    return rows


def real_row(name: str, predictor: Any, suite: BenchSuite, examples: tuple[Example, ...]) -> dict[str, Any]:
    """End to end (tokenisation included) over full batches of the split's own texts, in a seeded order."""
    rng = np.random.default_rng(suite.seed)
    picked = [examples[i] for i in rng.choice(len(examples), size=min(suite.real_samples, len(examples)), replace=False)]
    size = min(suite.real_batch_size, len(picked))
    batches = [picked[i : i + size] for i in range(0, len(picked) - size + 1, size)]
    inputs = [([e.text for e in b], [e.text_pair or "" for e in b] if b[0].text_pair is not None else None) for b in batches]
    tokens = [float(predictor.tokenize(t, p)["attention_mask"].sum()) for t, p in inputs]
    seconds = measure(lambda i: predictor.predict(inputs[i % len(inputs)][0], text_pairs=inputs[i % len(inputs)][1]),
                      suite.timing, clock_for(suite.device))
    calls = [tokens[i % len(tokens)] for i in range(seconds.size)]
    return {"model": name, "kind": "latency", "mode": "real", "batch_size": size, "seq_len": None,
            "mean_tokens": float(np.mean(tokens)) / size, **summarize(seconds, size, float(np.mean(calls)))}
