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
from minilm_deploy.hardware import cpu_vendor

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


def metric_loss(metric: str, reference: float, value: float) -> float:
    """How much worse `value` is than `reference` in `metric`'s units (negative: better)."""
    return (value - reference) if metric in LOWER_IS_BETTER else (reference - value)


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
                line["accuracy_drop"] = metric_loss(acc["metric"], base_acc["value"], acc["value"])
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
    if gates.max_speedup_loss_pct is not None or gates.max_accuracy_loss is not None:
        out += baseline_ratio_gates(results, baseline or {"summary": []}, gates.max_speedup_loss_pct, gates.max_accuracy_loss)
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


def baseline_ratio_gates(results: dict[str, Any], baseline: dict[str, Any], speedup_loss_pct: float | None,
                         accuracy_loss: float | None) -> list[Row]:
    """Per candidate also in the baseline: its speed-up over the teacher and its metric, against the baseline's.

    Both figures are measured within one run (candidate and teacher on the same machine), so the gate
    holds on another CPU where absolute latencies do not compare -- except that INT8 speed depends on
    the CPU's vector instructions (VNNI makes it several times faster against fp32): when the
    baseline was measured on another CPU class, or on a CPU of the same class from another vendor (an AVX512-VNNI
    Xeon against an EPYC: 4.4x against 13.4x for the gate's INT8 student), the speed-up comparison is skipped,
    visibly, and the in-run gates (min-speedup, max-accuracy-drop) remain.
    """
    then = {s["model"]: s for s in baseline.get("summary", []) if s.get("role") == "candidate"}
    here, there = (_machine(r.get("environment", {})) for r in (results, baseline))
    out = []
    for now in (s for s in results["summary"] if s["role"] == "candidate" and s["model"] in then):
        old = then[now["model"]]
        if speedup_loss_pct is not None and here != there:
            out.append({**_gate("max-speedup-loss", now["model"], None, speedup_loss_pct, True,
                                f"{now['model']}: speed-up not compared: the baseline was measured on a {there} CPU, "
                                f"this one is {here}; `make gate-baseline` on such a CPU records one"), "skipped": True})
        elif speedup_loss_pct is not None:
            out.append(_ratio_gate(now, old, speedup_loss_pct))
        if accuracy_loss is not None:
            out.append(_accuracy_loss_gate(now, old, accuracy_loss))
    if not out:
        limit = speedup_loss_pct if speedup_loss_pct is not None else accuracy_loss
        out.append(_gate("baseline", "*", None, limit or 0.0, False,
                         "the baseline has no candidate of the same name as this run; record a new one"))
    return out


def _machine(environment: dict[str, Any]) -> str:
    """A results file's CPU as the speed-up comparison tells CPUs apart: its vendor and class ("amd avx512_vnni")."""
    return f"{cpu_vendor(str(environment.get('cpu', '')))} {environment.get('cpu_class')}"


def _ratio_gate(now: Row, old: Row, pct: float) -> Row:
    if now["speedup"] is None or old.get("speedup") is None:
        return _gate("max-speedup-loss", now["model"], None, pct, False,
                     f"{now['model']}: cannot compare the speed-up with the baseline's: not measured in both")
    loss = (1.0 - now["speedup"] / old["speedup"]) * 100.0
    return _gate("max-speedup-loss", now["model"], loss, pct, loss <= pct,
                 f"{now['model']} speed-up {now['speedup']:.2f}x vs the baseline's {old['speedup']:.2f}x "
                 f"({-loss:+.1f}%, limit -{pct:g}%)")


def _accuracy_loss_gate(now: Row, old: Row, limit: float) -> Row:
    if now["accuracy"] is None or old.get("accuracy") is None or now["metric"] != old.get("metric"):
        return _gate("max-accuracy-loss", now["model"], None, limit, False,
                     f"{now['model']}: cannot compare the accuracy with the baseline's: not the same metric measured in both")
    loss = metric_loss(now["metric"], old["accuracy"], now["accuracy"])
    return _gate("max-accuracy-loss", now["model"], loss, limit, loss <= limit,
                 f"{now['model']} {now['metric']} {now['accuracy']:.4f} vs the baseline's {old['accuracy']:.4f} "
                 f"(loss {loss:.4f}, limit {limit:.4f})")


def failure_line(gates: list[Row]) -> str | None:
    """One line naming the first failed gate, its figure and its limit (and how many others failed)."""
    failed = [g for g in gates if not g["passed"]]
    if not failed:
        return None
    more = f" (+{len(failed) - 1} more failed, see report.md)" if len(failed) > 1 else ""
    return f"gate --{failed[0]['gate']} failed: {failed[0]['message']}{more}"
