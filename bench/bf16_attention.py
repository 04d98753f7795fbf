"""The real distillation, under bf16 autocast on a CPU, with and without the student's attention in float32
(`minilm_deploy/models/cpu_bf16_attention.py`): wall time, tokens/s and the final losses of one recipe.

The recipe is bench/students.py's 3x384 c1-both (teacher all-MiniLM-L6-v2, its layers 0, 2, 5, relations and
hidden-state alignment on corpus-en, batch 32 x 64, the student's dropout the teacher's 0.1), at a smaller token
budget. Each way runs in its own fresh process through the library's `run_distill`, in alternating rounds; the
"bf16 attention" way is the same code with `training_attention` made a no-op (what the trainer did before).

    python -m bench.bf16_attention                    # 512k tokens each way, 2 rounds, 1 thread (~10 min on AMX)
    python -m bench.bf16_attention --dropout 0        # the same with a student without dropout (flash attention)

Both ways force `bf16: true`: meant for a CPU with AMX or AVX512-BF16, where `bf16: auto` turns it on (elsewhere
the comparison means little). Writes bench/results/bf16_attention.json and .md. Not a test: nothing asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
from pathlib import Path

from bench import harness

WAYS = ("float32-attention", "bf16-attention")
RUN = "3x384:c1-both:1M:rotten-tomatoes:1"  # the recipe (its token budget replaced by --tokens)


def worker(args) -> dict:
    import torch

    from bench import students
    from minilm_deploy.models import cpu_bf16_attention

    torch.set_num_threads(args.threads)
    if args.worker == "bf16-attention":
        cpu_bf16_attention.training_attention = lambda model, enabled=True: contextlib.nullcontext()
    with tempfile.TemporaryDirectory() as tmp:
        recipe = students.distill_recipe(students.Run.parse(RUN), 6)
        recipe["output_dir"] = tmp
        recipe["distill"]["train"] |= {"tokens": args.tokens, "bf16": True, "checkpoint_every": 10**9}
        if args.dropout is not None:
            recipe["distill"]["student"]["dropout"] = args.dropout
        record = harness.distill_student(recipe, "bf16_attention")
    return {"way": args.worker, "wall_s": record["wall_seconds_this_session"], "cpu_s": record["cpu_seconds_this_session"],
            "tokens": record["tokens"], "steps": record["steps"], "tokens_per_s": record["tokens"] / record["wall_seconds_this_session"],
            "final": record["final"], "bf16": record["bf16"]}


def main_run(args) -> dict:
    from minilm_deploy.hardware import cpu_class, cpu_has_fast_bf16, cpu_name

    runs = harness.interleaved_workers("bench.bf16_attention", WAYS, args.rounds, args.threads)
    medians = {way: {"wall_s": statistics.median(r["wall_s"] for r in rs),
                     "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rs)} for way, rs in runs.items()}
    return {
        "setting": {"recipe": RUN, "tokens": args.tokens, "dropout": args.dropout, "rounds": args.rounds,
                    "threads": args.threads},
        "machine": {"cpu": cpu_name(), "cpu_class": cpu_class(), "fast_bf16": cpu_has_fast_bf16(),
                    "cores": os.cpu_count(), "load_average_start": os.getloadavg()},
        "runs": runs, "medians": medians,
        "speedup": medians["float32-attention"]["tokens_per_s"] / medians["bf16-attention"]["tokens_per_s"],
    }


def report(result: dict, stem: Path) -> None:
    s, m = result["setting"], result["medians"]
    lines = [
        "# Real distillation under bf16 autocast: the student's attention in float32 or in bf16",
        "",
        f"CPU: {result['machine']['cpu']} (class {result['machine']['cpu_class']}, fast bf16: "
        f"{result['machine']['fast_bf16']}). Recipe: bench/students.py `{s['recipe']}` at {s['tokens']:,} tokens, student "
        f"dropout {'0.1 (the teacher' + chr(39) + 's, the default)' if s.get('dropout') is None else s['dropout']}, "
        f"{s['threads']} thread(s), {s['rounds']} round(s) alternating, each in a fresh process; load average at "
        f"start {', '.join(f'{x:.1f}' for x in result['machine']['load_average_start'])}.",
        "",
        "| student attention | round | wall (s) | tokens/s (wall) | tokens/s (trainer, last window) | final loss | attention KL "
        "| value KL | hidden | embedding |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for way in WAYS:
        for i, r in enumerate(result["runs"][way], 1):
            f = r["final"]
            lines.append(f"| {way} | {i} | {r['wall_s']:.1f} | {r['tokens_per_s']:.0f} | {f['tokens_per_s']:.0f} | {f['loss']:.4f} | "
                         f"{f.get('attention', float('nan')):.4f} | {f.get('value', float('nan')):.4f} | "
                         f"{f.get('hidden', float('nan')):.4f} | {f.get('embedding', float('nan')):.4f} |")
    lines += [
        "",
        f"- Medians: float32 attention {m['float32-attention']['tokens_per_s']:.0f} tokens/s, bf16 attention "
        f"{m['bf16-attention']['tokens_per_s']:.0f}: **{result['speedup']:.2f}x**.",
        "- Wall time includes loading the teacher, reading and packing the corpus and saving the student (the same "
        "for both ways).",
        "",
        f"Reproduce: `{reproduce(s, stem)}`.",
    ]
    harness.write_report(stem, result, "\n".join(lines), indent=2)


def reproduce(setting: dict, stem: Path) -> str:
    return harness.reproduce_line("bench.bf16_attention", setting, stem, parse)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", choices=WAYS, help=argparse.SUPPRESS)
    p.add_argument("--tokens", type=int, default=512_000)
    p.add_argument("--dropout", type=float, default=None,
                   help="the student's dropout (default: the recipe's, the teacher's 0.1; with attention dropout PyTorch's "
                        "CPU SDPA runs its math path, which computes bf16 inputs in float32 anyway)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=harness.RESULTS / "bf16_attention")
    return p.parse_args(argv)


if __name__ == "__main__":
    harness.worker_or_main(parse, worker, main_run, report)
