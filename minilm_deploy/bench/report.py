"""`report.md` (tables) and the PNG plots (matplotlib, Agg): latency against batch size, and
accuracy against speed-up with the Pareto front."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minilm_deploy.bench.compare import latency_rows

LATENCY_PLOT = "latency_vs_batch.png"
PARETO_PLOT = "accuracy_vs_speedup.png"


def _f(value: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if value is None else fmt.format(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def markdown(results: dict[str, Any], plots: list[str]) -> str:
    env, teacher = results["environment"], results.get("teacher")
    models = {m["name"]: m for m in results["models"]}
    lines = [f"# Benchmark: {results['suite']['name']}", "",
             f"{results['created']} · {env['cpu']} · {env['cores']} cores · threads {results['suite']['threads'] or 'default'} · "
             f"device {results['suite']['device']} · teacher: {teacher or 'none'}", ""]
    lines += ["## Models", ""]
    lines += _table(
        ["model", "role", "backend", "precision", "size MB", "peak RSS MB", "metric", "value", "drop vs teacher", "speed-up (grid)", "speed-up (real)"],
        [[s["model"], s["role"], models[s["model"]]["backend"], models[s["model"]]["precision"],
          _f(models[s["model"]]["file_size_bytes"] / 2**20, "{:.1f}"), _f(models[s["model"]]["peak_rss_mb"], "{:.0f}"),
          s["metric"] or "–", _f(s["accuracy"], "{:.4f}"), _f(s["accuracy_drop"], "{:+.4f}"), _f(s["speedup"], "{:.2f}x"),
          _f(s["speedup_real"], "{:.2f}x")] for s in results["summary"]],
    )
    notes = [f"- {m['name']}: {m['accuracy_note']}" for m in results["models"] if m.get("accuracy_note")]
    lines += ["", *notes, "", "## Latency", "",
              "grid: synthetic token ids of exactly batch × seq (model time); real: the task's texts, tokenisation included.", ""]
    ref = {(r["mode"], r["batch_size"], r["seq_len"]): r["latency_ms"]["p50"] for r in latency_rows(results, teacher)} if teacher else {}
    lines += _table(
        ["model", "mode", "batch", "seq", "p50 ms", "p90 ms", "p99 ms", "seq/s", "tok/s", "n", "vs teacher"],
        [[r["model"], r["mode"], str(r["batch_size"]), str(r["seq_len"] or f"~{r['mean_tokens']:.0f}"),
          _f(r["latency_ms"]["p50"], "{:.3f}"), _f(r["latency_ms"]["p90"], "{:.3f}"), _f(r["latency_ms"]["p99"], "{:.3f}"),
          _f(r["throughput_seq_s"], "{:.1f}"), _f(r["throughput_tok_s"], "{:.0f}"), str(r["iterations"]),
          _f(ref[(r["mode"], r["batch_size"], r["seq_len"])] / r["latency_ms"]["p50"], "{:.2f}x")
          if (r["mode"], r["batch_size"], r["seq_len"]) in ref else "–"]
         for r in latency_rows(results)],
    )
    if results["gates"]:
        lines += ["", "## Gates", ""]
        lines += _table(["gate", "model", "figure", "limit", "result"],
                        [[g["gate"], g["model"], _f(g["figure"], "{:.4g}"), f"{g['limit']:g}", "skipped" if g.get("skipped") else "pass" if g["passed"] else "**FAIL**"]
                         for g in results["gates"]])
    if plots:
        lines += ["", "## Plots", "", *(f"![{p}]({p})" for p in plots)]
    return "\n".join(lines) + "\n"


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both speed-up and accuracy (both higher is better), by speed-up."""
    front = [p for p in points if not any(q[0] >= p[0] and q[1] >= p[1] and q != p for q in points)]
    return sorted(set(front))


def plot_all(results: dict[str, Any], folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    grid = [r for r in latency_rows(results) if r["mode"] == "grid"]
    if grid:
        seqs = sorted({r["seq_len"] for r in grid})
        fig, axes = plt.subplots(1, len(seqs), figsize=(5 * len(seqs), 4), squeeze=False)
        for ax, seq in zip(axes[0], seqs, strict=True):
            for m in results["models"]:
                curve = sorted((r["batch_size"], r["latency_ms"]["p50"]) for r in grid if r["model"] == m["name"] and r["seq_len"] == seq)
                if curve:
                    ax.plot(*zip(*curve, strict=True), marker="o", label=f"{m['name']} ({m['role']})")
            batches = sorted({r["batch_size"] for r in grid})
            ax.set_xscale("log", base=2)
            ax.set(yscale="log", xticks=batches, xticklabels=[str(b) for b in batches], xlabel="batch size",
                   ylabel="p50 latency (ms)", title=f"sequence length {seq}")
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / LATENCY_PLOT, dpi=110)
        plt.close(fig)
        written.append(LATENCY_PLOT)
    pts = {s["model"]: (s["speedup"], s["accuracy"]) for s in results["summary"] if s["speedup"] is not None and s["accuracy"] is not None}
    if pts:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for name, (x, y) in pts.items():
            ax.scatter([x], [y], s=40)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        front = pareto_front(list(pts.values()))
        ax.plot(*zip(*front, strict=True), linestyle="--", color="grey", label="Pareto front")
        metric = next(s["metric"] for s in results["summary"] if s["accuracy"] is not None)
        ax.set(xlabel="speed-up over the teacher (p50, grid geometric mean)", ylabel=metric, title="accuracy against speed-up")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / PARETO_PLOT, dpi=110)
        plt.close(fig)
        written.append(PARETO_PLOT)
    return written
