"""`minilm export MODEL --profile auto`: build every CPU candidate, validate each, time each on this
machine, keep the fastest that passed.

Candidates (one export profile each, from `exporters/`): ONNX Runtime fp32, INT8 and INT8 on the attention
projections only (the FFN in fp32), and where the
`openvino` extra is installed OpenVINO fp32 (inference precision bf16 where the CPU has AMX or
AVX512-BF16), INT8 without and with SmoothQuant (NNCF, both need the task's texts). Each is a complete export, validated as
every export is; one that misses its tolerances, or whose worst embedding cosine to PyTorch is under
auto's own gate (0.99; the sentence embedding's where the model has one, else the token states'), is recorded
as rejected, with the reason. The
passing ones are timed through the runtime's own backends, in interleaved rounds, one thread by
default: on the task's real texts at batch 1 and 32 when a task is given, else on 128-token
batches of 1 and 32. The choice minimises the geometric mean of the p50s. The chosen artifact is
written as it is, with every candidate's figures, the decision and the CPU class in its manifest
(`auto`); loading it on another CPU class warns, with the command to pick again.
"""

from __future__ import annotations

import math
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from minilm_deploy.errors import InputError, MinilmError
from minilm_deploy.export.backends import export_backend
from minilm_deploy.export.profile import ExportProfile, load_profile
from minilm_deploy.hardware import cpu_class, cpu_name
from minilm_deploy.paths import atomic_directory

# candidate name → (export profile in exporters/, runtime backend)
CANDIDATES: dict[str, tuple[str, str]] = {
    "onnxruntime-fp32": ("onnx-cpu-fp32", "onnxruntime"),
    "onnxruntime-int8": ("onnx-cpu-int8", "onnxruntime"),
    "onnxruntime-int8-attention": ("onnx-cpu-int8-attention", "onnxruntime"),
    "openvino-fp32": ("openvino-cpu-fp32", "openvino"),
    "openvino-int8": ("openvino-cpu-int8", "openvino"),
    "openvino-int8-smoothquant": ("openvino-cpu-int8-smoothquant", "openvino"),
}
TIMING_BATCHES = (1, 32)
MIN_COSINE = 0.99  # auto's accuracy gate: a candidate whose worst embedding cosine to PyTorch is lower is not chosen
GRID_LENGTH = 128
REAL_TEXTS = 256  # real texts drawn for timing


def needs_calibration(profile: ExportProfile) -> bool:
    """Whether exporting with `profile` needs the task's texts: NNCF's INT8 is calibrated on them."""
    return profile.backend == "openvino" and profile.precision == "int8"


def candidate_names(has_task: bool) -> tuple[list[str], dict[str, str]]:
    """The candidates this machine can build, and why the others are left out."""
    skipped: dict[str, str] = {}
    names = []
    for name, (profile, backend) in CANDIDATES.items():
        if why := export_backend(backend).missing():
            skipped[name] = why
        elif needs_calibration(load_profile(profile)) and not has_task:
            skipped[name] = "needs --task (calibration texts)"
        else:
            names.append(name)
    return names, skipped


def export_auto(model: str | Path, *, output: Path | None = None, task: str | None = None, overwrite: bool = False,
                max_length: int = 0, threads: int = 1, rounds: int = 5) -> dict[str, Any]:
    """Build, validate and time every candidate; write the fastest that passed to `output`."""
    from minilm_deploy import artifact as mf
    from minilm_deploy.export.build import default_output, export_model
    from minilm_deploy.sources import load_task, resolve_model

    path = resolve_model(model)
    output = Path(output) if output else default_output(path, replace(load_profile("onnx-cpu-fp32"), name="auto"))
    if output.exists() and not overwrite:
        raise InputError(f"{output} already exists; choose another --output or pass --overwrite")
    task_data = load_task(task) if task else None
    names, skipped = candidate_names(task_data is not None)
    with atomic_directory(output, overwrite=overwrite) as root:
        scratch = root / ".candidates"
        built: dict[str, Path] = {}
        records: dict[str, dict[str, Any]] = {name: {"status": "skipped", "reason": why} for name, why in skipped.items()}
        for name in names:
            profile = replace(load_profile(CANDIDATES[name][0]), max_length=max_length)
            print(f"export auto: building {name}", file=sys.stderr)
            try:
                summary = export_model(path, profile, output=scratch / name, task=task)
            except MinilmError as exc:  # ValidationFailed included: the candidate is out, the others go on
                records[name] = {"status": "rejected", "reason": str(exc)}
                continue
            cosine = worst_cosine(summary["validation"])
            if cosine is not None and cosine < MIN_COSINE:
                records[name] = {"status": "rejected", "min_cosine": cosine,
                                 "reason": f"worst embedding cosine to PyTorch {cosine:.4f} < auto's gate {MIN_COSINE}"}
                continue
            built[name] = scratch / name
        if not built:
            raise MinilmError("export auto: no candidate passed validation: " +
                              "; ".join(f"{n}: {r['reason']}" for n, r in records.items()))
        points = timing_points(built[next(iter(built))], task_data)
        timings = time_candidates({n: (folder, CANDIDATES[n][1]) for n, folder in built.items()}, points, threads, rounds)
        for name, figures in timings.items():
            records[name] = {"status": "passed", "p50_ms": figures, "score_ms": geometric_mean(list(figures.values()))}
        chosen = min(timings, key=lambda n: records[n]["score_ms"])
        decision = decide(chosen, records, points)
        for item in built[chosen].iterdir():
            shutil.move(str(item), str(root / item.name))
        shutil.rmtree(scratch)
        manifest = mf.load_manifest(root)
        auto = {"chosen": chosen, "backend": CANDIDATES[chosen][1], "cpu": cpu_name(), "cpu_class": cpu_class(),
                "threads": threads, "points": [p["label"] for p in points], "candidates": records, "reason": decision}
        manifest = replace(manifest, auto=auto, files=mf.hash_tree(root))
        mf.write_manifest(root, manifest)
    print(f"export auto: {decision}", file=sys.stderr)
    return {"output": str(output), "task": manifest.task, "precision": manifest.precision, "auto": auto,
            "validation": manifest.validation, "optimization": manifest.optimization, "variants": manifest.variants,
            "triton_model": manifest.triton_model}


def worst_cosine(validation: dict[str, Any]) -> float | None:
    """The lowest cosine to PyTorch, over an export's checks, of the output the model is served for: the sentence
    embedding where the model pools one (what `Predictor` returns and `minilm serve` answers with), else the token
    states (None for a classifier: its gate is the task check's accuracy). The export's own tolerances, which
    every candidate passed already, cover every output."""
    by_output: dict[str, list[float]] = {}
    for check in validation.values():
        for name, figures in ((check.get("outputs") or {}) if isinstance(check, dict) else {}).items():
            if name in ("last_hidden_state", "sentence_embedding") and figures.get("min_cosine") is not None:
                by_output.setdefault(name, []).append(figures["min_cosine"])
    values = by_output.get("sentence_embedding") or by_output.get("last_hidden_state")
    return min(values) if values else None


def timing_points(artifact: Path, task: Any) -> list[dict[str, Any]]:
    """What each candidate is timed on: real texts at batch 1 and 32 with a task ({"label", "texts": batches}),
    else 128-token batches ({"label", "batch", "length"}); each candidate tokenizes them itself."""
    if task is None:
        from minilm_deploy.runtime import Predictor

        with Predictor.load(artifact, threads=1) as predictor:
            length = min(GRID_LENGTH, predictor.max_length)
        return [{"label": f"b{b}x{length}", "batch": b, "length": length} for b in TIMING_BATCHES]
    split = next((s for s in ("test", "dev", "validation", "train") if task.splits.get(s)), None)
    rng = np.random.default_rng(0)
    examples = task.splits[split]
    picked = [examples[i].text for i in rng.choice(len(examples), size=min(REAL_TEXTS, len(examples)), replace=False)]
    points = []
    for b in sorted({min(b, len(picked)) for b in TIMING_BATCHES}):  # a split smaller than 32: its size
        batches = [picked[i : i + b] for i in range(0, len(picked) - b + 1, b)][:32]
        points.append({"label": f"b{b} real ({split})", "texts": batches})
    return points


def time_candidates(built: dict[str, tuple[Path, str]], points: list[dict[str, Any]], threads: int,
                    rounds: int) -> dict[str, dict[str, float]]:
    """p50 ms per candidate ({name: (folder, runtime backend)}) and point, rounds interleaved."""
    from minilm_deploy.bench.suite import Timing
    from minilm_deploy.bench.timing import cycling, measure
    from minilm_deploy.runtime import Predictor

    predictors = {name: Predictor.load(folder, backend=backend, threads=threads) for name, (folder, backend) in built.items()}
    samples: dict[str, dict[str, list[float]]] = {n: {p["label"]: [] for p in points} for n in predictors}
    timing = Timing(warmup=1, min_iterations=3, min_duration_s=0.2)
    try:
        feeds = {name: {p["label"]: ([predictor.tokenize(t) for t in p["texts"]] if "texts" in p
                                     else [predictor.synthetic_feeds(p["batch"], p["length"])]) for p in points}
                 for name, predictor in predictors.items()}
        for _ in range(rounds):
            for name, predictor in predictors.items():
                for label, batches in feeds[name].items():
                    seconds = measure(cycling(predictor.runner.infer, batches), timing)
                    samples[name][label].extend(seconds.tolist())
    finally:
        for predictor in predictors.values():
            predictor.close()
    return {name: {label: round(float(np.median(s)) * 1e3, 3) for label, s in by.items()} for name, by in samples.items()}


def geometric_mean(values: list[float]) -> float:
    return round(math.exp(sum(math.log(max(v, 1e-9)) for v in values) / len(values)), 3)


def decide(chosen: str, records: dict[str, dict[str, Any]], points: list[dict[str, Any]]) -> str:
    """One line: what was chosen, its figures, and the runner-up it beat."""
    passed = sorted((n for n, r in records.items() if r["status"] == "passed"), key=lambda n: records[n]["score_ms"])
    figures = ", ".join(f"{label} {ms:.2f} ms" for label, ms in records[chosen]["p50_ms"].items())
    line = f"chose {chosen} on this {cpu_class()} CPU ({figures})"
    if len(passed) > 1:
        second = passed[1]
        line += f"; {records[second]['score_ms'] / records[chosen]['score_ms']:.2f}x faster than {second}"
    out = [n for n, r in records.items() if r["status"] != "passed"]
    if out:
        line += "; not candidates: " + ", ".join(f"{n} ({records[n]['status']})" for n in out)
    return line
