"""The real trainers on a CPU with and without their CPU measures (`minilm_deploy/models/cpu_training.py`: the
student's attention in float32 under bf16, the fast dropout; the fused AdamW; `minilm_deploy/cpu_heap.py`: freed
memory kept during training): wall time, tokens/s, page faults, peak memory and the final losses of one recipe.

The recipe is bench/students.py's 3x384 c1-both (teacher all-MiniLM-L6-v2, its layers 0, 2, 5, relations and
hidden-state alignment on corpus-en, batch 32 x 64, the student's dropout the teacher's 0.1), at a smaller token
budget. Each way runs in its own fresh process through the library's `run_distill` (or, with `--stage finetune`,
`finetune_model`), in alternating rounds:
  cpu-training   the trainer as it is;
  glibc-heap     the same with glibc's malloc as it comes (freed memory given back to the kernel, then faulted in again);
  float32-products  the same with the attention's two matrix products in float32 under bf16 (as up to 735cb05);
  default-adamw  the same with torch's default AdamW instead of the fused one (what fine-tuning used up to 758b360);
  torch-dropout  the trainer with torch's dropout (modules and SDPA's attention dropout);
  torch          also without the float32 attention: SDPA and dropout as PyTorch does them.

    python -m bench.cpu_training                          # bf16, 256k tokens each way, 2 rounds, 1 thread (~10 min on AMX)
    python -m bench.cpu_training --precision fp32         # float32 (what AVX2-only CPUs train in)
    python -m bench.cpu_training --dropout 0              # a student without dropout (flash attention)
    python -m bench.cpu_training --stage finetune         # `minilm finetune`'s trainer: all-MiniLM-L6-v2, 150 steps
    python -m bench.cpu_training --ways cpu-training,glibc-heap   # two of the ways

Writes bench/results/cpu_training.json and .md. Not a test: nothing asserts a time. (Its first version,
`bench/bf16_attention.py` at 87f9c33, wrote bench/results/bf16_attention_amx_*: float32 attention against bf16.)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import tempfile
from pathlib import Path

from bench import harness

WAYS = ("cpu-training", "glibc-heap", "float32-products", "default-adamw", "torch-dropout", "torch")
RUN = "3x384:c1-both:1M:rotten-tomatoes:1"  # the recipe (its token budget replaced by --tokens)
FINETUNE_MODEL = "zoo:all-minilm-l6-v2"  # --stage finetune: the model fine-tuned
WAY_TEXT = {"cpu-training": "the trainer as it is", "glibc-heap": "with glibc's malloc as it comes (cpu_heap off)",
            "float32-products": "with the attention's matrix products in float32",
            "default-adamw": "with torch's default AdamW, not the fused one",
            "torch-dropout": "with torch's dropout", "torch": "with torch's dropout and SDPA"}


def worker(args) -> dict:
    import torch

    from bench import students
    from minilm_deploy import cpu_heap
    from minilm_deploy.models import cpu_training

    torch.set_num_threads(args.threads)
    if args.worker == "glibc-heap":
        cpu_heap.kept_heap = _heap_as_it_comes
    if args.worker == "float32-products":
        in_dtype = cpu_training.dropout_attention
        cpu_training.dropout_attention = lambda q, k, v, mask, p, scaling: in_dtype(
            q.float(), k.float(), v.float(), mask, p, scaling).to(q.dtype)
    if args.worker == "default-adamw":
        class DefaultAdamW(torch.optim.AdamW):  # torch's default implementation: a loop over the tensors on a CPU
            def __init__(self, params, *args, fused=None, **kwargs) -> None:
                super().__init__(params, *args, **kwargs)

        torch.optim.AdamW = DefaultAdamW  # type: ignore[misc]
    if args.worker in ("torch-dropout", "torch"):
        cpu_training.fast_dropouts = lambda model, enabled=True: contextlib.nullcontext()
        cpu_training._plain_encoder_attention = lambda *args: False  # SDPA with its own attention dropout
    if args.worker == "torch":
        cpu_training.training_attention = lambda model, enabled=True: contextlib.nullcontext()
    if args.stage == "finetune":
        return {"way": args.worker, **_finetune(args), **_memory()}
    with tempfile.TemporaryDirectory() as tmp:
        recipe = students.distill_recipe(students.Run.parse(RUN), 6)
        recipe["output_dir"] = tmp
        recipe["distill"]["train"] |= {"tokens": args.tokens, "bf16": args.precision == "bf16", "checkpoint_every": 10**9}
        if args.dropout is not None:
            recipe["distill"]["student"]["dropout"] = args.dropout
        record = harness.distill_student(recipe, "cpu_training")
    return {"way": args.worker, "wall_s": record["wall_seconds_this_session"], "cpu_s": record["cpu_seconds_this_session"],
            "tokens": record["tokens"], "steps": record["steps"], "tokens_per_s": record["tokens"] / record["wall_seconds_this_session"],
            "final": record["final"], "bf16": record["bf16"], **_memory()}


@contextlib.contextmanager
def _heap_as_it_comes(device_type: str):
    yield False


def _memory() -> dict:
    """This process's minor page faults and peak resident memory (MiB), loading included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"minor_faults": usage.ru_minflt, "peak_rss_mib": usage.ru_maxrss / 1024}


def _finetune(args) -> dict:
    """`minilm finetune`'s trainer: FINETUNE_MODEL on rotten-tomatoes, bench/students.py's settings, `--steps` steps."""
    from bench import students
    from minilm_deploy.config import from_dict
    from minilm_deploy.finetune.api import finetune_model
    from minilm_deploy.finetune.recipe import FinetuneRecipe

    options = {**students.FINETUNE, "task": students.TASKS["rotten-tomatoes"], "models": ["student"], "steps": args.steps,
               "bf16": args.precision == "bf16", "checkpoint_every": 0, "dev_limit": 64}
    with tempfile.TemporaryDirectory() as tmp:
        metrics = finetune_model(FINETUNE_MODEL, from_dict(FinetuneRecipe, options, source="cpu_training"), Path(tmp) / "out",
                                 (1,), label="cpu_training")
    run = metrics["runs"][0]
    examples = args.steps * options["batch_size"]
    return {"wall_s": metrics["wall_seconds"], "train_s": metrics["train_seconds"], "steps": args.steps,
            "examples_per_s": examples / metrics["train_seconds"],
            "final": {"loss": run["history"][-1]["train_loss"], "test": metrics["splits"]["test"]}, "bf16": run["bf16"]}


def rate_key(stage: str) -> str:
    return "tokens_per_s" if stage == "distill" else "examples_per_s"


def main_run(args) -> dict:
    from minilm_deploy.hardware import cpu_class, cpu_has_fast_bf16, cpu_name

    ways = selected_ways(args.ways)
    runs = harness.interleaved_workers("bench.cpu_training", ways, args.rounds, args.threads)
    rate = rate_key(args.stage)
    medians = {way: {"wall_s": statistics.median(r["wall_s"] for r in rs), rate: statistics.median(r[rate] for r in rs)}
               for way, rs in runs.items()}
    return {
        "setting": {"stage": args.stage, "recipe": RUN if args.stage == "distill" else FINETUNE_MODEL,
                    "tokens": args.tokens, "steps": args.steps, "precision": args.precision, "dropout": args.dropout,
                    "rounds": args.rounds, "threads": args.threads, "ways": args.ways},
        "machine": {"cpu": cpu_name(), "cpu_class": cpu_class(), "fast_bf16": cpu_has_fast_bf16(),
                    "cores": os.cpu_count(), "load_average_start": os.getloadavg()},
        "runs": runs, "medians": medians,
        "speedup": {way: medians["cpu-training"][rate] / medians[way][rate] for way in ways[1:]},
    }


def selected_ways(given: str) -> tuple[str, ...]:
    """`--ways` as a tuple: known ways, the trainer as it is first (the speed-ups are against it)."""
    ways = tuple(way.strip() for way in given.split(",") if way.strip())
    unknown = [way for way in ways if way not in WAYS]
    if unknown or not ways or ways[0] != WAYS[0]:
        raise SystemExit(f"--ways: {', '.join(unknown) or given!r}: give {WAYS[0]} first, then any of {', '.join(WAYS[1:])}")
    return ways


def report(result: dict, stem: Path) -> None:
    s, m, machine = result["setting"], result["medians"], result["machine"]
    stage = s.get("stage", "distill")
    rate = rate_key(stage)
    unit = rate.removesuffix("_per_s")
    digits = ".0f" if stage == "distill" else ".1f"
    if stage == "distill":
        what = (f"Distillation: bench/students.py `{s['recipe']}` at {s['tokens']:,} tokens, student dropout "
                f"{'0.1 (the teacher' + chr(39) + 's, the default)' if s.get('dropout') is None else s['dropout']}")
        head = ["tokens/s (wall)", "tokens/s (trainer, last window)", "final loss", "attention KL", "value KL", "hidden",
                "embedding"]
    else:
        what = (f"Fine-tuning: `{s['recipe']}` on rotten-tomatoes, {s['steps']} steps of bench/students.py's settings "
                "(batch 32 x 64, lr 1e-4, its own dropout 0.1)")
        head = ["examples/s (training)", "train loss", "test accuracy"]
    lines = [
        f"# Real {stage} on a CPU ({s['precision']}): the trainer's CPU kernels against PyTorch's",
        "",
        f"CPU: {machine['cpu']} (class {machine['cpu_class']}, fast bf16: {machine['fast_bf16']}). {what}; "
        f"{s['threads']} thread(s), {s['rounds']} round(s) alternating, each way in a fresh process; load average at "
        f"start {', '.join(f'{x:.1f}' for x in machine['load_average_start'])}.",
        "",
        "| way | round | wall (s) | " + " | ".join(head) + " | minor page faults | peak RSS (MiB) |",
        "|---|---:|---:|" + "---:|" * (len(head) + 2),
    ]
    ways = [way for way in WAYS if way in result["runs"]]  # records made before a way was added lack it
    for way in ways:
        for i, r in enumerate(result["runs"][way], 1):
            f = r["final"]
            cells = ([f"{r[rate]:.0f}", f"{f['tokens_per_s']:.0f}", f"{f['loss']:.4f}",
                      *(f"{f.get(part, float('nan')):.4f}" for part in ("attention", "value", "hidden", "embedding"))]
                     if stage == "distill" else
                     [f"{r[rate]:.1f}", f"{f['loss']:.4f}", f"{f['test']['accuracy']:.4f}"])
            memory = [f"{r['minor_faults']:,}", f"{r['peak_rss_mib']:,.0f}"] if "minor_faults" in r else ["", ""]
            lines.append(f"| {way} | {i} | {r['wall_s']:.1f} | " + " | ".join(cells + memory) + " |")
    lines += [
        "",
        f"- Medians ({unit}/s): " + ", ".join(f"{way} {m[way][rate]:{digits}}" for way in ways) + "; cpu-training over "
        + ", ".join(f"{way} **{result['speedup'][way]:.2f}x**" for way in ways[1:]) + ".",
        "- " + ("Wall time includes loading the teacher, reading and packing the corpus and saving the student."
                if stage == "distill" else "Training time includes one evaluation on 64 dev sentences (float32, the "
                "same for every way); wall time also loading, tokenizing and the whole test split."),
        "- The ways: " + "; ".join(f"{way}, {WAY_TEXT[way]}" for way in ways) + ".",
        "",
        f"Reproduce: `{reproduce(s, stem)}`.",
    ]
    harness.write_report(stem, result, "\n".join(lines), indent=2)


def reproduce(setting: dict, stem: Path) -> str:
    return harness.reproduce_line("bench.cpu_training", setting, stem, parse)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.add_worker_options(p, WAYS, threads=1, out=harness.RESULTS / "cpu_training")
    p.add_argument("--stage", choices=("distill", "finetune"), default="distill")
    p.add_argument("--tokens", type=int, default=256_000, help="distillation tokens per way")
    p.add_argument("--steps", type=int, default=150, help="fine-tuning steps per way")
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16",
                   help="bf16 autocast (what `bf16: auto` turns on with AMX or AVX512-BF16) or float32")
    p.add_argument("--dropout", type=float, default=None,
                   help="the student's dropout (default: the recipe's, the teacher's 0.1)")
    p.add_argument("--ways", default=",".join(WAYS), help="the ways to run, comma-separated, cpu-training first")
    return p.parse_args(argv)


if __name__ == "__main__":
    harness.worker_or_main(parse, worker, main_run, report)
