"""Side-by-side figures (ratios against the teacher) and the CI gates, as pure functions over results.

Speed-up of a candidate = teacher p50 / candidate p50, per grid point both measured, summarised by
the geometric mean; accuracy drop = teacher metric − candidate metric (reversed for an error metric).
A gate that cannot be evaluated (no teacher, no accuracy, nothing in common with the baseline)
fails: CI must not pass on a figure nobody measured.
"""

from __future__ import annotations

import math
from typing import Any

from minilm_deploy.data.metrics import LOWER_IS_BETTER

Row = dict[str, Any]


def row_key(row: Row) -> tuple:
    return (row["model"], row["mode"], row["batch_size"], row["seq_len"])


def latency_rows(results: dict[str, Any], model: str | None = None) -> list[Row]:
    return [r for r in results["rows"] if r["kind"] == "latency" and (model is None or r["model"] == model)]


def accuracy_of(results: dict[str, Any], model: str) -> Row | None:
    return next((r for r in results["rows"] if r["kind"] == "accuracy" and r["model"] == model), None)


def _geomean(values: list[float]) -> float | None:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def speedups(results: dict[str, Any], teacher: str, model: str, mode: str) -> list[float]:
    ref = {(r["batch_size"], r["seq_len"]): r for r in latency_rows(results, teacher) if r["mode"] == mode}
    return [ref[(r["batch_size"], r["seq_len"])]["latency_ms"]["p50"] / r["latency_ms"]["p50"]
            for r in latency_rows(results, model) if r["mode"] == mode and (r["batch_size"], r["seq_len"]) in ref]


def summarize(results: dict[str, Any]) -> list[Row]:
    """One line per model: speed-ups and accuracy against the teacher, size ratio."""
    teacher = results.get("teacher")
    models = {m["name"]: m for m in results["models"]}
    base_acc = accuracy_of(results, teacher) if teacher else None
    out = []
    for name, m in models.items():
        acc = accuracy_of(results, name)
        line: Row = {"model": name, "role": m["role"], "metric": acc["metric"] if acc else None,
                     "accuracy": acc["value"] if acc else None, "accuracy_drop": None, "speedup": None,
                     "speedup_real": None, "size_ratio": None}
        if teacher and teacher in models:
            line["speedup"] = _geomean(speedups(results, teacher, name, "grid"))
            line["speedup_real"] = _geomean(speedups(results, teacher, name, "real"))
            line["size_ratio"] = m["file_size_bytes"] / max(models[teacher]["file_size_bytes"], 1)
            if acc and base_acc and acc["metric"] == base_acc["metric"]:
                sign = -1.0 if acc["metric"] in LOWER_IS_BETTER else 1.0
                line["accuracy_drop"] = sign * (base_acc["value"] - acc["value"])
        out.append(line)
    return out


def _gate(gate: str, model: str, figure: float | None, limit: float, passed: bool, message: str) -> Row:
    return {"gate": gate, "model": model, "figure": figure, "limit": limit, "passed": passed, "message": message}


def check_gates(results: dict[str, Any], gates: Any, baseline: dict[str, Any] | None = None) -> list[Row]:
    out: list[Row] = []
    candidates = [s for s in results["summary"] if s["role"] == "candidate"]
    if gates.max_accuracy_drop is not None:
        out += [_accuracy_gate(s, gates.max_accuracy_drop, results.get("teacher")) for s in candidates]
    if gates.min_speedup is not None:
        out += [_speedup_gate(s, gates.min_speedup, results.get("teacher")) for s in candidates]
    if gates.max_regression_pct is not None:
        out += baseline_gates(results, baseline or {"rows": []}, gates.max_regression_pct)
    return out


def _accuracy_gate(s: Row, limit: float, teacher: str | None) -> Row:
    drop = s["accuracy_drop"]
    if drop is None:
        why = "no teacher to compare with (--against)" if not teacher else "accuracy was not measured for it or the teacher (--task)"
        return _gate("max-accuracy-drop", s["model"], None, limit, False, f"{s['model']}: cannot check the accuracy drop: {why}")
    return _gate("max-accuracy-drop", s["model"], drop, limit, drop <= limit,
                 f"{s['model']} {s['metric']} drop {drop:.4f} vs the teacher (limit {limit:.4f})")


def _speedup_gate(s: Row, limit: float, teacher: str | None) -> Row:
    sp = s["speedup"]
    if sp is None:
        why = "no teacher to compare with (--against)" if not teacher else "no grid point in common with the teacher"
        return _gate("min-speedup", s["model"], None, limit, False, f"{s['model']}: cannot check the speed-up: {why}")
    return _gate("min-speedup", s["model"], sp, limit, sp >= limit, f"{s['model']} speed-up {sp:.2f}x over the teacher (limit {limit:.2f}x)")


def baseline_gates(results: dict[str, Any], baseline: dict[str, Any], pct: float) -> list[Row]:
    """Per latency measurement also in the baseline: p50 may be at most `pct`% slower."""
    base = {row_key(r): r for r in baseline["rows"] if r.get("kind") == "latency"}
    out = []
    for r in latency_rows(results):
        b = base.get(row_key(r))
        if b is None:
            continue
        now, then = r["latency_ms"]["p50"], b["latency_ms"]["p50"]
        change = (now / then - 1.0) * 100.0
        where = f"{r['model']} {r['mode']} batch {r['batch_size']}" + (f" seq {r['seq_len']}" if r["seq_len"] else "")
        out.append(_gate("max-regression", r["model"], change, pct, change <= pct,
                         f"{where} p50 {now:.3f} ms is {change:+.1f}% vs the baseline's {then:.3f} ms (limit +{pct:g}%)"))
    if not out:
        out.append(_gate("max-regression", "*", None, pct, False,
                         "the baseline shares no measurement (model, mode, batch, seq) with this run; record a new one"))
    return out


def failure_line(gates: list[Row]) -> str | None:
    """One line naming the first failed gate, its figure and its limit (and how many others failed)."""
    failed = [g for g in gates if not g["passed"]]
    if not failed:
        return None
    more = f" (+{len(failed) - 1} more failed, see report.md)" if len(failed) > 1 else ""
    return f"gate --{failed[0]['gate']} failed: {failed[0]['message']}{more}"
