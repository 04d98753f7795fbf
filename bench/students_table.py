"""The tables, `summary.json` and the crossover plot from the per-run JSON files of `bench/students.py`.

    .venv/bin/python -m bench.students table   → bench/results/students/{students.md, summary.json, crossover.png}
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench import harness
from bench.students import GROUPS, RESULTS, TOKENS, VARIANTS, student_variant

TASK_ORDER = ("rotten-tomatoes", "trec")
# The crossover curves: an objective at every budget, starting (0 tokens) from the copy it distils, undistilled
CURVES = (("c1-both", "c1", "task-agnostic: c1 + both on corpus-en (0 tokens: c1)"),
          ("t1-both-kd", "t1-kd", "task-specific: t1 + both on the task's texts, KD fine-tune (0 tokens: t1-kd)"))
# The claim (issue 14's first target): the best distilled 3x384 student against each truncation baseline,
# seed by seed (a seed fixes the fine-tuning's data order and, for t1/-kd, the teacher it copies).
CLAIM = ("3x384", "rotten-tomatoes", "t1-both-kd", "1M")  # student, task, variant, distillation tokens
CLAIM_BASELINES = ("c", "c1", "t1", "c1-kd", "t1-kd")
# Other comparisons worth pairing by seed (candidate minus baseline; the distillation tokens are the candidate's):
# each crossover curve's budgets against its 0-token start, and the 4x384 student, whose seeds 1-3 answer the
# issue's "3x384 and 4x384, 3 seeds", hidden-state distillation in fine-tuning against the same fine-tuning
# without it, and pruning in steps against pruning at once. A pair is shown where both sides have two seeds or more.
PAIRS = tuple(pair for variant, start, _ in CURVES for tokens in TOKENS if tokens != "0"  # the claim's pairs stay there
              if (pair := (CLAIM[0], CLAIM[1], variant, tokens, start))[:4] != CLAIM or start not in CLAIM_BASELINES) + (
    ("4x384", "rotten-tomatoes", "c1-both", "1M", "c1"), ("4x384", "rotten-tomatoes", "c1-both", "1M", "c"),
    ("4x384", "rotten-tomatoes", "c1", "0", "c"),
    # hidden-state distillation while fine-tuning a width-pruned student: on the cheap proxy, then on mpnet
    *((group, "rotten-tomatoes", "t1-pruned-kd-aug-hid", "0", "t1-pruned-kd-aug") for group in ("3x192", "mpnet-6x384")),
    # pruning in two steps (depth, then width) against pruning both at once, and the width in two steps (three in
    # all) against one, fine-tuned alike
    *((group, "rotten-tomatoes", "t1-steps-kd-aug", "0", "t1-pruned-kd-aug") for group in ("3x192", "mpnet-6x384")),
    *((group, "rotten-tomatoes", "t1-steps3-kd-aug", "0", "t1-steps-kd-aug") for group in ("3x192", "mpnet-6x384")),
    # the two-step recipe's last fine-tuning with one change each: a teacher assistant's soft targets, lr, epochs
    *(("3x192", "rotten-tomatoes", f"t1-steps-kd-aug-{change}", "0", "t1-steps-kd-aug") for change in ("ta", "lr3", "e4")),
    # the pruned copy refit by least squares before the same fine-tuning
    *((group, "rotten-tomatoes", "t1-pruned-refit-kd-aug", "0", "t1-pruned-kd-aug") for group in ("3x192", "mpnet-6x384")),
    # the refit inside the two-step recipe's width step, against the two-step recipe and against the refit in one step
    *((group, "rotten-tomatoes", "t1-steps-refit-kd-aug", "0", baseline) for group in ("3x192", "mpnet-6x384")
      for baseline in ("t1-steps-kd-aug", "t1-pruned-refit-kd-aug")))
Key = tuple[str, str, str, str]  # (student, variant, tokens label, task)


DistillKey = tuple[str, str, str]  # (student, variant, tokens label)


def load(runs_dir: Path) -> tuple[dict[Key, list[dict[str, Any]]], dict[DistillKey, list[dict[str, Any]]]]:
    """The fine-tuning records by row, and the distillation records by student (several where a variant distils
    one student per task and seed)."""
    runs: dict[Key, list[dict[str, Any]]] = defaultdict(list)
    distills: dict[DistillKey, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(runs_dir.glob("*.json")):
        record = json.loads(path.read_text())
        if record["kind"] == "finetune":
            runs[(record["student"], record["variant"], record["tokens_label"], record["task"])].append(record)
        elif record["kind"] == "distill":  # "finetune-remade", "distill-remade": redone for a missing folder, not results
            distills[(record["student"], record["variant"], record["tokens_label"])].append(record)
    for records in runs.values():
        records.sort(key=lambda r: r["seed"])
    return runs, distills


def accuracy(record: dict[str, Any]) -> float:
    return float(record["test"][record["metric"]])


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    values = [accuracy(r) for r in records]
    return {"seeds": [r["seed"] for r in records], "accuracy": [round(v, 6) for v in values],
            "mean": round(statistics.mean(values), 6), "std": round(statistics.stdev(values), 6) if len(values) > 1 else None}


def _trained_on(record: dict[str, Any]) -> str:
    """The GPU where one was used ("cuda: <name>"), else the CPU class (records made before the `device` field
    ran on a CPU)."""
    device = record.get("device") or "cpu"
    return device if device.startswith("cuda") else record.get("cpu_class") or "?"


def machine(records: list[dict[str, Any]]) -> dict[str, str]:
    """Where a row's seeds were fine-tuned: the CPU classes (or GPU), and each with its training precision
    (records made before the `bf16` field ran on avx2, where `bf16: auto` is off)."""
    return {"cpu_class": ", ".join(sorted({_trained_on(r) for r in records})),
            "where": "; ".join(sorted({f"{_trained_on(r)} {'bf16' if r.get('bf16') else 'fp32'}" for r in records}))}


def summary_rows(runs: dict[Key, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (student, variant, budget, task), in the order of the groups and variants."""
    order = {name: i for i, name in enumerate([*(g.teacher_label for g in GROUPS.values()), *GROUPS])}
    variants = {name: i for i, name in enumerate(VARIANTS)}
    rows = []
    for (student, variant, tokens, task), records in sorted(
            runs.items(), key=lambda kv: (order.get(kv[0][0], 99), variants[kv[0][1]], TOKENS[kv[0][2]], kv[0][3])):
        rows.append({"student": student, "variant": variant, "description": VARIANTS[variant].description, "task": task,
                     "tokens": TOKENS[tokens], **summarize(records), **machine(records)})
    return rows


def _teacher_mean(rows: list[dict[str, Any]], student: str, task: str) -> float | None:
    label = next((g.teacher_label for name, g in GROUPS.items() if name == student), student)
    return next((r["mean"] for r in rows if r["student"] == label and r["variant"] == "teacher" and r["task"] == task), None)


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "–"
    n = len(row["seeds"])
    spread = f" ± {100 * row['std']:.1f}" if row["std"] is not None else ""
    return f"{100 * row['mean']:.1f}{spread} ({n} seed{'s' if n > 1 else ''})"


def _distill_cpu(records: list[dict[str, Any]]) -> str:
    """The distillation CPU-seconds of a row's student: the mean where it was distilled once per seed."""
    if not records:
        return "–"
    mean = statistics.mean(r["cpu_seconds_this_session"] for r in records)
    return f"{mean:.0f}" + (f" (mean of {len(records)})" if len(records) > 1 else "")


def _where(cells: dict[str, dict[str, Any]]) -> str:
    """Where a row's seeds ran: one entry when every task ran alike, else each task's ("trec: amx bf16")."""
    places = {task: r["where"] for task, r in cells.items()}
    if len(set(places.values())) <= 1:
        return next(iter(places.values()), "–")
    return "; ".join(f"{task}: {places[task]}" for task in TASK_ORDER if task in places)


def markdown(rows: list[dict[str, Any]], distills: dict[DistillKey, list[dict[str, Any]]]) -> str:
    lines = ["| student | variant | distill tokens | " + " | ".join(f"{t} test acc. %" for t in TASK_ORDER)
             + " | RT retained % | distill CPU-s | CPU, precision |", "|---|---|---:|" + "---:|" * (len(TASK_ORDER) + 2)
             + "---|"]
    keys = list(dict.fromkeys((r["student"], r["variant"], r["tokens"]) for r in rows))
    label = {v: k for k, v in TOKENS.items()}
    for student, variant, tokens in keys:
        cells = {r["task"]: r for r in rows if (r["student"], r["variant"], r["tokens"]) == (student, variant, tokens)}
        rt, teacher = cells.get("rotten-tomatoes"), _teacher_mean(rows, student, "rotten-tomatoes")
        kept = f"{100 * rt['mean'] / teacher:.1f}" if rt and teacher else "–"
        cpu = _distill_cpu(distills.get((student, student_variant(variant), label[tokens]), []))  # -kd: its student's
        lines.append(f"| {student} | {variant}: {VARIANTS[variant].description} | {tokens:,} | "
                     + " | ".join(_cell(cells.get(t)) for t in TASK_ORDER) + f" | {kept} | {cpu} | {_where(cells)} |")
    return "\n".join(lines) + "\n"


def paired(runs: dict[Key, list[dict[str, Any]]], candidate: Key, baseline: Key) -> dict[str, Any] | None:
    """`candidate` minus `baseline` on the seeds both have: the per-seed differences in accuracy points, their mean
    and std, the paired t statistic (mean / (std / sqrt n)), and how many seeds the candidate wins. None below 2 seeds."""
    ours = {r["seed"]: accuracy(r) for r in runs.get(candidate, [])}
    theirs = {r["seed"]: accuracy(r) for r in runs.get(baseline, [])}
    seeds = sorted(ours.keys() & theirs.keys())
    if len(seeds) < 2:
        return None
    diffs = [100 * (ours[s] - theirs[s]) for s in seeds]
    mean, std = statistics.mean(diffs), statistics.stdev(diffs)
    return {"candidate": candidate[1], "baseline": baseline[1], "seeds": seeds, "diff_points": [round(d, 4) for d in diffs],
            "mean": round(mean, 4), "std": round(std, 4),
            "t": round(mean / (std / len(seeds) ** 0.5), 3) if std > 0 else None,
            "wins": sum(d > 0 for d in diffs)}


def claim(runs: dict[Key, list[dict[str, Any]]]) -> dict[str, Any] | None:
    """Issue 14's first target, computed: the candidate's mean against the better (higher mean) of c and c1 and
    that baseline's seed std, its share of the fine-tuned teacher's mean, and the paired comparisons."""
    student, task, variant, tokens = CLAIM
    rows = {v: summarize(runs[k]) for v in ("c", "c1") if (k := (student, v, "0", task)) in runs}
    teacher = runs.get((GROUPS[student].teacher_label, "teacher", "0", task))
    candidate = runs.get((student, variant, tokens, task))
    if not rows or not teacher or not candidate:
        return None
    best = max(rows, key=lambda v: rows[v]["mean"])
    ours, teachers = summarize(candidate), summarize(teacher)
    margin = 100 * (ours["mean"] - rows[best]["mean"])
    two_std = 200 * rows[best]["std"] if rows[best]["std"] is not None else None
    # decided only with a seed std on each side (two seeds of the candidate and of the baseline)
    above = margin > two_std if two_std is not None and ours["std"] is not None else None
    return {"student": student, "task": task, "candidate": variant, "tokens": TOKENS[tokens], "seeds": ours["seeds"],
            "mean": ours["mean"], "better_baseline": best, "baseline_mean": rows[best]["mean"],
            "baseline_std": rows[best]["std"], "margin_points": round(margin, 4),
            "two_std_points": round(two_std, 4) if two_std is not None else None,
            "above_by_two_std": above, "teacher_mean": teachers["mean"],
            "retained_pct": round(100 * ours["mean"] / teachers["mean"], 4),
            "paired": [p for b in CLAIM_BASELINES if (p := paired(runs, (student, variant, tokens, task),
                                                                   (student, b, "0", task)))]}


def other_pairs(runs: dict[Key, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """`PAIRS`, each paired by seed where both sides have two seeds or more."""
    return [{"student": student, "task": task, "tokens": TOKENS[tokens], **p} for student, task, variant, tokens, baseline
            in PAIRS if (p := paired(runs, (student, variant, tokens, task), (student, baseline, "0", task)))]


def pairs_markdown(pairs: list[dict[str, Any]]) -> str:
    if not pairs:
        return ""
    lines = ["\n## Other comparisons, paired by seed\n", "| student | task | candidate | baseline | seeds | per-seed "
             "difference | mean | std | t | wins |", "|---|---|---|---|---|---|---:|---:|---:|---:|"]
    for p in pairs:
        lines.append(f"| {p['student']} | {p['task']} | {p['candidate']} ({p['tokens']:,} tokens) | {p['baseline']} | "
                     + _paired_cells(p))
    return "\n".join(lines) + "\n"


def _paired_cells(p: dict[str, Any]) -> str:
    """A `paired` result's table cells from the seeds on: seeds, per-seed differences, mean, std, t, wins."""
    t = f"{p['t']:.2f}" if p["t"] is not None else "–"
    return (f"{p['seeds']} | {', '.join(f'{d:+.2f}' for d in p['diff_points'])} | {p['mean']:+.2f} | {p['std']:.2f} | "
            f"{t} | {p['wins']}/{len(p['seeds'])} |")


def claim_markdown(result: dict[str, Any] | None) -> str:
    if result is None:
        return ""
    lines = [f"\n## The claim: {result['candidate']} ({result['student']}, {result['tokens']:,} distillation tokens) "
             f"against truncation on {result['task']}\n",
             f"- Mean {100 * result['mean']:.2f}% over seeds {result['seeds']}; the better of c and c1 is "
             f"{result['better_baseline']} at {100 * result['baseline_mean']:.2f}%"
             + (f" (seed std {100 * result['baseline_std']:.2f})" if result["baseline_std"] is not None else " (1 seed)")
             + f": margin {result['margin_points']:+.2f} points"
             + (f" against two stds {result['two_std_points']:.2f}: "
                f"**{'above' if result['above_by_two_std'] else 'not above'}**." if result["above_by_two_std"] is not None
                else ": **undecided** (a seed standard deviation needs two seeds of the candidate and the baseline)."),
             f"- {result['retained_pct']:.1f}% of the fine-tuned teacher's mean ({100 * result['teacher_mean']:.2f}%).",
             "", "Paired by seed (candidate minus baseline, accuracy points; t = mean / (std / sqrt n), n − 1 degrees "
             "of freedom):", "", "| baseline | seeds | per-seed difference | mean | std | t | wins |", "|---|---|---|---:|---:|---:|---:|"]
    for p in result["paired"]:
        lines.append(f"| {p['baseline']}: {VARIANTS[p['baseline']].description} | " + _paired_cells(p))
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path, student: str = "3x384", task: str = "rotten-tomatoes") -> bool:
    """Test accuracy of each curve's objective against the distillation budget, with the truncation baselines
    (c, c1) and the teacher as bands. False if no curve has two points."""
    styles = (("o", "tab:blue"), ("s", "tab:brown"))  # one per curve of CURVES, drawn or not
    curves = [(label, sorted((r for r in rows if r["student"] == student and r["task"] == task
                              and r["variant"] in (variant, start)), key=lambda r: r["tokens"]), style)
              for (variant, start, label), style in zip(CURVES, styles, strict=True)]
    curves = [(label, curve, style) for label, curve, style in curves if len(curve) >= 2]
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5.4))
    for label, curve, (marker, colour) in curves:
        xs = [max(r["tokens"], 1e5) for r in curve]  # 0 tokens drawn at the left edge of a log axis
        seeds = "/".join(str(len(r["seeds"])) for r in curve)
        ax.errorbar(xs, [100 * r["mean"] for r in curve], yerr=[100 * (r["std"] or 0) for r in curve], marker=marker,
                    color=colour, capsize=3, label=f"{label}; seeds per point {seeds}")
    colours = {"c": "tab:red", "c1": "tab:purple", "teacher": "tab:green"}
    for variant in ("c", "c1", "teacher"):
        owner = student if variant != "teacher" else GROUPS[student].teacher_label
        ref = next((r for r in rows if (r["student"], r["variant"], r["task"]) == (owner, variant, task)), None)
        if ref is None:
            continue
        mean, std = 100 * ref["mean"], 100 * (ref["std"] or 0)
        ax.axhline(mean, color=colours[variant], linestyle="--", label=f"{variant}: {VARIANTS[variant].description}")
        ax.axhspan(mean - std, mean + std, color=colours[variant], alpha=0.12)
    ax.set_xscale("log")
    ax.set_xlabel("distillation tokens (0 drawn at the left edge)")
    ax.set_ylabel(f"{task} test accuracy % (mean ± seed std)")
    ax.set_title(f"{student} student of all-MiniLM-L6-v2: does distillation overtake truncation?")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1)  # below: no point hidden
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_all(runs_dir: Path, out: Path) -> None:
    runs, distills = load(runs_dir)
    rows = summary_rows(runs)
    harness.write_report(out / "summary.json", rows)
    result = claim(runs)
    harness.write_report(out / "claim.json", result)
    command = "table" if out == RESULTS else f"table --results {out}"
    header = ("# Students against layer truncation (issue 14)\n\n"
              f"Made by `.venv/bin/python -m bench.students {command}` from `runs/*.json`. Test accuracy, mean ± std over "
              "seeds; fine-tuning: the whole task, 3 epochs, best dev epoch, length 64, lr 1e-4; the last column is where "
              "the fine-tuning ran (CPU class; fp32, or bf16 autocast where `bf16: auto` found AMX or AVX512-BF16).\n\n")
    drawn = plot(rows, out / "crossover.png")
    harness.write_report(out / "students.md", markdown=header + markdown(rows, distills) + claim_markdown(result)
                         + pairs_markdown(other_pairs(runs)) + ("\n![crossover](crossover.png)\n" if drawn else ""))
    print(f"wrote {out / 'students.md'}, {out / 'summary.json'}, {out / 'claim.json'}"
          + (f", {out / 'crossover.png'}" if drawn else ""))
