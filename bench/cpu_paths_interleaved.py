"""`bench.cpu_paths`' rows timed again in ONE process, in interleaved rounds: the tie-breaker.

    .venv/bin/python -m bench.cpu_paths_interleaved --peers runs/cpu_paths/all-minilm-l6-v2/peers
    .venv/bin/python -m bench.cpu_paths_interleaved --model runs/quickstart/student --peers runs/cpu_paths/student/peers

`bench.cpu_paths` times every row in its own fresh process, one after another; on a shared host two
timings of one file taken that way differ by up to a quarter, which is more than separates the fastest
rows. Here every row is loaded once through the runtime's backends and timed in turn, round after round,
with the timing `--profile auto` itself uses (`export.auto.time_candidates`), so the host's drift falls on
every row alike. Rows: PyTorch fp32 eager, our exports from `bench.cpu_paths`' work folder (exported
where missing) and the peers. Points: the task's real texts at batch 1 and 32 and 128-token batches
of 1 and 32, for each thread count.

Writes bench/results/cpu_paths/<cpu class>[-<model>]-interleaved.json and .md. Not a test: nothing
asserts a time; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench import harness
from bench.cpu_paths import DEFAULT_MODEL, WORK, export_all, model_name, peer_paths, result_path
from minilm_deploy.export.auto import MIN_COSINE

SKIP = ("openvino-int8",)  # slower than its fp32 and under auto's gate on every class measured: not a contender


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--task", default="zoo:rotten-tomatoes")
    parser.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--peers", type=Path, help="peer exports made by `python -m bench.cpu_paths_peers`")
    args = parser.parse_args()
    from minilm_deploy.export.auto import time_candidates, timing_points
    from minilm_deploy.hardware import cpu_class, cpu_name
    from minilm_deploy.sources import load_task, resolve_model

    paths = {"pytorch-fp32": {"path": str(resolve_model(args.model)), "backend": "torch"}}
    paths |= {row: info for row, info in export_all(args.model, args.task, WORK / model_name(args.model)).items()
              if "path" in info and row not in SKIP}
    paths |= peer_paths(args.peers)
    built = {row: (Path(info["path"]), info["backend"]) for row, info in paths.items()}
    some_export = next(Path(info["path"]) for row, info in paths.items() if row != "pytorch-fp32")
    points = timing_points(some_export, load_task(args.task)) + timing_points(some_export, None)
    figures = {}
    for threads in (int(t) for t in args.threads.split(",")):
        print(f"cpu_paths_interleaved: {len(built)} rows, {threads} thread(s), {args.rounds} rounds", flush=True)
        figures[str(threads)] = time_candidates(built, points, threads, args.rounds)
    klass = cpu_class()
    out = result_path(args.model, klass)
    recorded = out.with_suffix(".json")  # bench.cpu_paths' record on this class: each row's real-text cosine
    cosines = json.loads(recorded.read_text()).get("real_cosine", {}) if recorded.is_file() else {}
    record = {"cpu": cpu_name(), "cpu_class": klass, "model": args.model, "task": args.task, "rounds": args.rounds,
              "points": [p["label"] for p in points], "paths": paths, "real_cosine": cosines,
              "interleaved_p50_ms": figures}
    command = (f"python -m bench.cpu_paths_interleaved --model {args.model} --task {args.task} --threads {args.threads} "
               f"--rounds {args.rounds}" + (f" --peers {args.peers}" if args.peers else ""))
    markdown = (f"# CPU paths on {cpu_name()} ({klass}), one process, interleaved rounds\n\n`{command}`; p50 ms over "
                f"{args.rounds} interleaved rounds; tokenisation not included (what `--profile auto` times); real "
                f"cosine: the worst sentence-embedding cosine to PyTorch on 256 test sentences, from {recorded.name}; "
                f"bold: the fastest export whose cosine passes auto's gate ({MIN_COSINE}).\n\n"
                + table(figures, [p["label"] for p in points], cosines))
    harness.write_report(out.with_name(out.name + "-interleaved"), record, markdown)
    print(markdown)


def table(figures: dict[str, dict[str, dict[str, float]]], labels: list[str], cosines: dict[str, float]) -> str:
    """One row per (path, threads); in bold, the fastest export of each column and thread count among those
    whose real cosine passes auto's gate."""
    lines = ["| path | threads | " + " | ".join(f"{label} ms" for label in labels) + " | real cosine |",
             "|---|---:|" + "---:|" * (len(labels) + 1)]
    for threads, rows in figures.items():
        passing = [n for n in rows if n != "pytorch-fp32" and cosines.get(n, 1.0) >= MIN_COSINE]
        best = {label: min(rows[n][label] for n in passing) for label in labels}
        for name, values in rows.items():
            cells = [f"**{values[label]:.2f}**" if name in passing and values[label] == best[label]
                     else f"{values[label]:.2f}" for label in labels]
            cosine = "1 (reference)" if name == "pytorch-fp32" else f"{cosines[name]:.4f}" if name in cosines else "–"
            lines.append(f"| {name} | {threads} | " + " | ".join(cells) + f" | {cosine} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
