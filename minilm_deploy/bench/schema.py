"""The documented JSON Schema of `results.json` (draft 2020-12); a copy is written next to every report.

results.json = {
  schema_version: 1, created: ISO time, suite: the BenchSuite used, environment: machine and versions,
  teacher: model name or null,
  models:  one entry per model (name, role, path, backend, device, precision, task, file size, load time,
           peak resident memory, max_length, backend details such as the ONNX Runtime providers),
  rows:    ONE ROW PER MEASUREMENT: kind "latency" (mode "grid": synthetic ids of exactly batch × seq;
           mode "real": the task's texts end to end, tokenisation included; seq_len null) with
           iterations, latency_ms {p50, p90, p99, mean, min}, throughput_seq_s, throughput_tok_s;
           or kind "accuracy" with metric, value, metrics, examples, split, method,
  summary: per model: speed-up (teacher p50 / model p50, geometric mean over the grid), the same on
           real texts, accuracy and its drop against the teacher, size ratio,
  gates:   per gate check: gate, model, figure, limit, passed, message
}
"""

from __future__ import annotations

from typing import Any

from minilm_deploy.errors import InputError, MinilmError

SCHEMA_VERSION = 1
_num = {"type": "number"}
_opt_num = {"type": ["number", "null"]}
_str = {"type": "string"}

LATENCY_ROW = {
    "type": "object",
    "required": ["model", "kind", "mode", "batch_size", "seq_len", "mean_tokens", "iterations", "latency_ms",
                 "throughput_seq_s", "throughput_tok_s"],
    "properties": {
        "model": _str, "kind": {"const": "latency"}, "mode": {"enum": ["grid", "real"]},
        "batch_size": {"type": "integer", "minimum": 1}, "seq_len": {"type": ["integer", "null"], "minimum": 1},
        "mean_tokens": _num, "iterations": {"type": "integer", "minimum": 1},
        "latency_ms": {"type": "object", "required": ["p50", "p90", "p99", "mean", "min"],
                       "properties": {k: {"type": "number", "minimum": 0} for k in ("p50", "p90", "p99", "mean", "min")}},
        "throughput_seq_s": {"type": "number", "minimum": 0}, "throughput_tok_s": {"type": "number", "minimum": 0},
    },
}
ACCURACY_ROW = {
    "type": "object",
    "required": ["model", "kind", "metric", "value", "metrics", "examples", "split", "method"],
    "properties": {
        "model": _str, "kind": {"const": "accuracy"}, "metric": _str, "value": _num,
        "metrics": {"type": "object", "additionalProperties": _num}, "examples": {"type": "integer", "minimum": 1},
        "split": _str, "method": _str,
    },
}
MODEL = {
    "type": "object",
    "required": ["name", "role", "path", "backend", "device", "precision", "task", "file_size_bytes", "load_s",
                 "peak_rss_mb", "max_length", "info"],
    "properties": {
        "name": _str, "role": {"enum": ["teacher", "candidate"]}, "path": _str, "backend": _str,
        "device": {"enum": ["cpu", "cuda"]}, "precision": _str, "task": {"enum": ["embedding", "classification", "regression"]},
        "file_size_bytes": {"type": "integer", "minimum": 0}, "load_s": _num, "peak_rss_mb": _num,
        "peak_rss_scope": {"enum": ["model", "process"]}, "max_length": {"type": "integer"}, "info": {"type": "object"},
        "accuracy_note": _str,
    },
}
SUMMARY = {
    "type": "object",
    "required": ["model", "role", "metric", "accuracy", "accuracy_drop", "speedup", "speedup_real", "size_ratio"],
    "properties": {"model": _str, "role": {"enum": ["teacher", "candidate"]}, "metric": {"type": ["string", "null"]},
                   "accuracy": _opt_num, "accuracy_drop": _opt_num, "speedup": _opt_num, "speedup_real": _opt_num,
                   "size_ratio": _opt_num},
}
GATE = {
    "type": "object",
    "required": ["gate", "model", "figure", "limit", "passed", "message"],
    "properties": {"gate": {"enum": ["max-accuracy-drop", "min-speedup", "max-regression", "max-speedup-loss", "max-accuracy-loss", "baseline"]}, "model": _str,
                   "figure": _opt_num, "limit": _num, "passed": {"type": "boolean"}, "message": _str,
                   "skipped": {"type": "boolean"}},
}
RESULTS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://minilm-deploy/bench/results.schema.json",
    "title": "minilm bench results",
    "type": "object",
    "required": ["schema_version", "created", "suite", "environment", "teacher", "models", "rows", "summary", "gates"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION}, "created": _str, "suite": {"type": "object"},
        "environment": {"type": "object", "required": ["cpu", "cores", "python", "versions"]},
        "teacher": {"type": ["string", "null"]},
        "models": {"type": "array", "minItems": 1, "items": MODEL},
        "rows": {"type": "array", "items": {"oneOf": [LATENCY_ROW, ACCURACY_ROW]}},
        "summary": {"type": "array", "items": SUMMARY},
        "gates": {"type": "array", "items": GATE},
    },
}


def validate_results(data: Any, source: str = "results.json") -> None:
    """Check `data` against RESULTS_SCHEMA (needs the `jsonschema` package); InputError names the first problem."""
    try:
        import jsonschema
    except ImportError:
        raise MinilmError("checking bench results needs jsonschema: pip install 'jsonschema>=4.18'") from None

    errors = sorted(jsonschema.Draft202012Validator(RESULTS_SCHEMA).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(top)"
        raise InputError(f"{source}: does not match the bench results schema at {where}: {errors[0].message[:200]}")
