"""The ablation's table and plot from the per-run JSON files of `bench/ablation.py` (issue 8).

    .venv/bin/python python -m bench.ablation table   → bench/results/ablation/ablation.md, ablation.png
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench import harness
from bench.ablation import GROUPS, TASK_DISTILLED, VARIANTS  # each group's teacher, the variants in order

ORDER = "".join(VARIANTS)
TASK_ORDER = ("rotten-tomatoes", "trec", "r8")


def load(results: Path) -> tuple[dict[tuple[str, str, str], list[dict[str, Any]]], dict[tuple[str, str], dict[str, Any]]]:
    runs: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    distills: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(results.glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("kind") == "finetune":
            runs[(record["size"], record["variant"], record["task"])].append(record)
        elif record.get("kind") == "distill":
            distills[(record["size"], record["variant"])] = record
    return runs, distills


def score(record: dict[str, Any]) -> float:
    return float(record["test"][record["metric"]])


def cell(records: list[dict[str, Any]]) -> str:
    if not records:
        return "–"
    values = [score(r) for r in records]
    if len(values) == 1:
        return f"{100 * values[0]:.1f} (1 seed)"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f} ({len(values)} seeds)"


def retained(runs: dict[tuple[str, str, str], list[dict[str, Any]]], size: str, records: list[dict[str, Any]]) -> str:
    """Mean rotten-tomatoes accuracy as a share of the group's teacher's (variant a) mean."""
    teacher = next((runs.get((label, "a", "rotten-tomatoes")) for group, (_, label, *_) in GROUPS.items()
                    if size in (group, label)), None)
    if not records or not teacher:
        return "–"
    return f"{100 * statistics.mean(map(score, records)) / statistics.mean(map(score, teacher)):.1f}"


def write_table(results: Path) -> str:
    runs, distills = load(results)
    sizes = sorted({k[0] for k in runs} | {k[0] for k in distills}, key=lambda s: (s != "6x384", s))
    tasks = [t for t in TASK_ORDER if any(k[2] == t for k in runs)]
    lines = ["| student | variant | " + " | ".join(f"{t} test accuracy %" for t in tasks)
             + " | RT retained % | distill tokens | distill CPU s | fine-tune CPU s (RT, mean) |",
             "|---|---|" + "---:|" * (len(tasks) + 4)]
    for size in sizes:
        for v in ORDER:
            if not any(k[:2] == (size, v) and k[2] in tasks for k in runs):
                continue  # not run, or run on polarity only (the zero-shot table)
            d = distills.get((size, TASK_DISTILLED.get(v, v)), {})  # (j), (k): their student's distillation
            rt = runs.get((size, v, "rotten-tomatoes"), [])
            ft_cpu = f"{statistics.mean(r['cpu_seconds'] for r in rt):.0f}" if rt else "–"
            description = rt[0]["description"] if rt else next(r for k, rs in runs.items() if k[:2] == (size, v) for r in rs)["description"]
            lines.append(f"| {size} | ({v}) {description} | " + " | ".join(cell(runs.get((size, v, t), [])) for t in tasks)
                         + f" | {retained(runs, size, rt)} | {d.get('tokens', 0):,} | {d.get('cpu_seconds_this_session', 0):.0f} | {ft_cpu} |")
    table = "\n".join(lines) + _zero_shot(runs, distills, results.parent)
    harness.write_report(results / "ablation.md", markdown=table)
    _plot(runs, results / "ablation.png")
    print(table)
    return table


def _zero_shot(runs: dict[tuple[str, str, str], list[dict[str, Any]]], distills: dict[tuple[str, str], dict[str, Any]],
               results: Path) -> str:
    """The multilingual students: English polarity training, zero-shot French, Dutch, German (accuracy %)."""
    keys = sorted(k for k in runs if k[2] == "polarity")
    if not keys:
        return ""
    splits = ("test", "test-fr", "test-nl", "test-de")
    lines = ["", "", "Multilingual: fine-tuned on English polarity, scored zero-shot (accuracy %, English `test` = reviews);",
             "the teacher's row is bench/results/finetune/teacher-polarity-xling.json (3 seeds); test-de has 155 sentences only.", "",
             "| student | variant | " + " | ".join(splits) + " | parameters | embedding parameters |",
             "|---|---|" + "---:|" * (len(splits) + 2)]
    teacher = results / "finetune" / "teacher-polarity-xling.json"
    if teacher.is_file():
        summary = json.loads(teacher.read_text())["summary"]
        params = next((d["teacher_parameters"] for k, d in distills.items() if k[0] == "e5-6x384" and "teacher_parameters" in d), None)
        embeddings = next((d["embedding_parameters"] for k, d in distills.items() if k[0] == "e5-6x384"), None)
        lines.append("| e5-12x384 (teacher, 3 seeds) | (a) teacher fine-tuned | "
                     + " | ".join(f"{100 * summary[s]['accuracy']['mean']:.1f} ± {100 * summary[s]['accuracy']['std']:.1f}" for s in splits)
                     + f" | {'–' if params is None else f'{params:,}'} | {'–' if embeddings is None else f'{embeddings:,}'}"
                     " (as the unpruned student's: copied) |")
    for key in keys:
        records = runs[key]
        d = distills.get(key[:2], {})
        values = [statistics.mean(100 * float(r["splits"][s]["accuracy"]) for r in records) for s in splits]
        lines.append(f"| {key[0]} | ({key[1]}) {records[0]['description']} | " + " | ".join(f"{v:.1f}" for v in values)
                     + f" | {d.get('student_parameters', 0):,} | {d.get('embedding_parameters', 0):,} |")
    return "\n".join(lines)


def _plot(runs: dict[tuple[str, str, str], list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in sorted(runs, key=lambda k: (k[0] != "6x384", k[0], ORDER.index(k[1]))) if k[2] == "rotten-tomatoes"]
    if not keys:
        return
    means = [100 * statistics.mean(score(r) for r in runs[k]) for k in keys]
    errors = [100 * statistics.stdev(score(r) for r in runs[k]) if len(runs[k]) > 1 else 0.0 for k in keys]
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(keys), 4))
    colours = {"6x384": "#444444", "3x384": "#1f77b4", "4x384": "#ff7f0e"}
    ax.bar(range(len(keys)), means, yerr=errors, capsize=3, color=[colours.get(k[0], "#999999") for k in keys])
    ax.set_xticks(range(len(keys)), [f"{k[0]}\n({k[1]})" for k in keys], fontsize=8)
    ax.set_ylabel("rotten-tomatoes test accuracy (%)")
    ax.set_ylim(min(means) - 5, max(means) + 3)
    ax.set_title("MiniLM ablation in miniature (teacher all-MiniLM-L6-v2)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
