"""Distillation throughput and peak memory: MiniLM capture (hooks on Q/K/V, early stop) vs the naive way,
and the same MiniLM step under bf16 autocast (what `train.bf16: auto` turns on where the CPU has AMX or
AVX512-BF16), all in one run.

The naive way calls teacher and student with `output_attentions=True` (eager attention on every
layer, full forward passes) and takes the values from hooks; it too is timed in fp32 and under bf16 autocast
(its KL in float32, as the MiniLM objective's). Both run the same data, the same
student, the same AdamW step. Each method runs in its own fresh process (so peak RSS is its own),
in alternating rounds; the medians are reported. Also measured: a plain teacher forward and a plain
student training step, to see how close a distillation step is to their sum. The student has no dropout
unless `--dropout` says otherwise (a recipe's student takes the teacher's: 0.1 for all-MiniLM-L6-v2).

    python -m bench.distill_throughput --threads 1                 # the issue's setting (CPU, ~8 min)
    python -m bench.distill_throughput --threads 1 --dropout 0.1   # the default recipe's student
    python -m bench.distill_throughput --steps 2 --rounds 1        # a quick look
    python -m bench.distill_throughput --threads 1 --fp32-only     # without the bf16 methods (AVX2-only CPUs)

Writes bench/results/distill_throughput.json and .md. Not a test: nothing asserts a time.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import platform
import resource
import statistics
from pathlib import Path

from bench import harness

METHODS = ("minilm", "minilm-bf16", "naive", "naive-bf16", "teacher-forward", "student-step")
RESULTS = harness.RESULTS


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _setup(args):
    import torch

    from minilm_deploy.distill.data import pack_blocks, shuffled_documents
    from minilm_deploy.distill.recipe import StudentSpec
    from minilm_deploy.models.student import build_student
    from minilm_deploy.models.teacher import load_encoder
    from minilm_deploy.sources import read_corpus

    torch.set_num_threads(args.threads)
    attn = "eager" if args.worker.startswith("naive") else None
    teacher = load_encoder(args.teacher, attn_implementation=attn)
    docs = shuffled_documents(read_corpus(args.corpus), 0)
    need = (args.steps + args.warmup) * args.batch * args.seq_len
    blocks = pack_blocks(docs, teacher.tokenizer, args.seq_len, max_tokens=need)
    student, _ = build_student(teacher.model, StudentSpec(layers=args.layers, hidden=args.hidden, dropout=args.dropout), seed=0)
    if attn:
        student.config._attn_implementation = attn
    device = torch.device(args.device)
    return teacher.model.to(device), student.to(device), blocks, device


def _batches(blocks, args, device):
    for step in range(args.steps + args.warmup):
        index = [(step * args.batch + i) % len(blocks) for i in range(args.batch)]
        yield step, blocks.input_ids[index].to(device), blocks.attention_mask[index].to(device)


def _run_minilm(teacher, student, blocks, args, device, clock, bf16: bool = False):
    import torch

    from minilm_deploy.distill.capture import CaptureModel, capture_teacher
    from minilm_deploy.distill.objective import MiniLMObjective
    from minilm_deploy.distill.recipe import LossSpec
    from minilm_deploy.training import training_autocast

    objective = MiniLMObjective(LossSpec(), 12, 12)
    t_cap, s_cap = CaptureModel(teacher, -1, objective.captured_parts()), CaptureModel(student, -1, objective.captured_parts())
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-4, fused=True)
    student.train()
    for step, ids, mask in _batches(blocks, args, device):
        record = step >= args.warmup
        clock.start()
        with training_autocast(student, device.type, bf16):  # as the trainer does
            t_states = capture_teacher(t_cap, ids, mask)
            clock.lap("teacher_forward", record)
            s_states = s_cap(ids, mask)
            clock.lap("student_forward", record)
            loss = objective(t_states, s_states).total  # float32 inside
            clock.lap("loss", record)
        loss.backward()
        clock.lap("student_backward", record)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.lap("optimizer", record)
    return float(loss)


def _naive_kl(t_probs, s_probs, mask):
    """The usual hand-written version: KL on probabilities, log of a clamp, mean over real rows."""
    import torch

    kl = (t_probs * (torch.log(t_probs.clamp_min(1e-12)) - torch.log(s_probs.clamp_min(1e-12)))).sum(-1)
    rows = mask[:, None, :].float()
    return (kl * rows).sum() / (rows.sum() * kl.shape[1])


def _value_probs(v, heads, mask):
    import torch

    B, T, D = v.shape
    v = v.view(B, T, heads, D // heads).transpose(1, 2)  # (B, H, T, d)
    scores = v @ v.transpose(-1, -2) / math.sqrt(D // heads)
    scores = scores.masked_fill(~mask.bool()[:, None, None, :], torch.finfo(scores.dtype).min)
    return scores.softmax(-1)


def _run_naive(teacher, student, blocks, args, device, clock, bf16: bool = False):
    import torch

    from minilm_deploy.training import training_autocast

    store = {}
    teacher.encoder.layer[-1].attention.self.value.register_forward_hook(lambda m, i, o: store.__setitem__("t", o))
    student.encoder.layer[-1].attention.self.value.register_forward_hook(lambda m, i, o: store.__setitem__("s", o))
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-4, fused=True)
    student.train()
    for step, ids, mask in _batches(blocks, args, device):
        record = step >= args.warmup
        clock.start()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            t_att = teacher(input_ids=ids, attention_mask=mask, output_attentions=True).attentions[-1]
        clock.lap("teacher_forward", record)
        with training_autocast(student, device.type, bf16):
            s_att = student(input_ids=ids, attention_mask=mask, output_attentions=True).attentions[-1]
        clock.lap("student_forward", record)
        t_v, s_v = store["t"].float(), store["s"].float()  # the loss in float32, as the MiniLM objective's
        loss = _naive_kl(t_att.float(), s_att.float(), mask) + _naive_kl(_value_probs(t_v, 12, mask), _value_probs(s_v, 12, mask), mask)
        clock.lap("loss", record)
        loss.backward()
        clock.lap("student_backward", record)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.lap("optimizer", record)
    return float(loss)


def _run_teacher_forward(teacher, student, blocks, args, device, clock):
    import torch

    for step, ids, mask in _batches(blocks, args, device):
        clock.start()
        with torch.no_grad():
            teacher(input_ids=ids, attention_mask=mask)
        clock.lap("teacher_forward", step >= args.warmup)
    return 0.0


def _run_student_step(teacher, student, blocks, args, device, clock):
    import torch

    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4, fused=True)
    student.train()
    for step, ids, mask in _batches(blocks, args, device):
        clock.start()
        loss = student(input_ids=ids, attention_mask=mask).last_hidden_state.pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.lap("student_step", step >= args.warmup)
    return float(loss)


RUNNERS = {"minilm": _run_minilm, "minilm-bf16": functools.partial(_run_minilm, bf16=True), "naive": _run_naive,
           "naive-bf16": functools.partial(_run_naive, bf16=True), "teacher-forward": _run_teacher_forward,
           "student-step": _run_student_step}


def worker(args) -> dict:
    import torch

    from minilm_deploy.bench.timing import PhaseClock

    teacher, student, blocks, device = _setup(args)
    clock = PhaseClock(device.type)
    rss_ready = _rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    loss = RUNNERS[args.worker](teacher, student, blocks, args, device, clock)
    step_s = sum(clock.parts.values()) / args.steps
    result = {
        "method": args.worker, "step_s": step_s, "tokens_per_s": args.batch * args.seq_len / step_s,
        "split_s": {k: v / args.steps for k, v in clock.parts.items()}, "loss": loss,
        "rss_ready_mib": rss_ready, "peak_rss_mib": _peak_rss_mib(), "peak_extra_mib": _peak_rss_mib() - rss_ready,
    }
    if device.type == "cuda":
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def _median_record(records: list[dict]) -> dict:
    out = dict(records[0])
    for key in ("step_s", "tokens_per_s", "peak_rss_mib", "peak_extra_mib", "rss_ready_mib", "cuda_peak_mib"):
        if key in out:
            out[key] = statistics.median(r[key] for r in records)
    out["split_s"] = {k: statistics.median(r["split_s"][k] for r in records) for k in out["split_s"]}
    out["rounds"] = len(records)
    return out


def main_run(args) -> dict:
    methods = tuple(m for m in METHODS if not (args.fp32_only and m.endswith("-bf16")))
    runs = harness.interleaved_workers("bench.distill_throughput", methods, args.rounds, args.threads)
    summary = {m: _median_record(r) for m, r in runs.items()}
    from minilm_deploy.hardware import cpu_class, cpu_has_fast_bf16, cpu_name

    ours, naive = summary["minilm"], summary["naive"]
    alone = summary["teacher-forward"]["step_s"] + summary["student-step"]["step_s"]
    result = {
        "setting": {k: getattr(args, k) for k in ("teacher", "layers", "hidden", "dropout", "batch", "seq_len", "steps",
                                                   "warmup", "rounds", "threads", "device", "fp32_only")},
        "machine": {"cpu": cpu_name(), "cpu_class": cpu_class(), "fast_bf16": cpu_has_fast_bf16(),
                    "cores": os.cpu_count(), "load_average_start": os.getloadavg(), "platform": platform.platform()},
        "results": summary,
        "speedup_tokens_per_s": ours["tokens_per_s"] / naive["tokens_per_s"],
        "peak_extra_ratio": ours["peak_extra_mib"] / naive["peak_extra_mib"],
        "step_over_teacher_forward_plus_student_step": ours["step_s"] / alone,
    }
    if not args.fp32_only:
        bf16 = summary["minilm-bf16"]
        result |= {
            "bf16_speedup_over_naive_bf16_tokens_per_s": bf16["tokens_per_s"] / summary["naive-bf16"]["tokens_per_s"],
            "bf16_speedup_tokens_per_s": bf16["tokens_per_s"] / ours["tokens_per_s"],
            "bf16_loss_difference": abs(bf16["loss"] - ours["loss"]),
        }
    return result


def report(result: dict, stem: Path) -> None:
    s, r = result["setting"], result["results"]
    lines = [
        "# Distillation throughput: MiniLM capture vs naive output_attentions, and bf16 autocast",
        "",
        f"CPU: {result['machine']['cpu']} (class {result['machine'].get('cpu_class')}, fast bf16: "
        f"{result['machine'].get('fast_bf16')}).",
        "",
        f"Teacher {s['teacher']}, student {s['layers']}x{s['hidden']} (dropout {s.get('dropout', 0.0)}), batch {s['batch']}, "
        f"sequence {s['seq_len']}, "
        f"{s['device']} with {s['threads']} threads; {s['steps']} timed steps after {s['warmup']} warm-up, "
        f"median of {s['rounds']} round(s), each method in a fresh process. "
        f"Load average at start: {', '.join(f'{x:.1f}' for x in result['machine']['load_average_start'])} "
        f"on {result['machine']['cores']} cores (a shared machine: absolute figures are noisy; the ratio is the point).",
        "",
        "| method | step (s) | tokens/s | teacher fwd (s) | student fwd (s) | loss (s) | student bwd (s) | optimizer (s) | peak RSS over ready (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in (m for m in ("minilm", "minilm-bf16", "naive", "naive-bf16") if m in r):
        x = r[name]
        sp = x["split_s"]
        lines.append(f"| {name} | {x['step_s']:.2f} | {x['tokens_per_s']:.0f} | {sp['teacher_forward']:.2f} | "
                     f"{sp['student_forward']:.2f} | {sp['loss']:.3f} | {sp['student_backward']:.2f} | "
                     f"{sp['optimizer']:.3f} | {x['peak_extra_mib']:.0f} |")
    lines += [
        "",
        f"- Speed-up (tokens/s, MiniLM capture over naive): **{result['speedup_tokens_per_s']:.2f}x**"
        + (f"; both under bf16 autocast: **{result['bf16_speedup_over_naive_bf16_tokens_per_s']:.2f}x**"
           if "bf16_speedup_over_naive_bf16_tokens_per_s" in result else ""),
        (f"- bf16 autocast over fp32, the same MiniLM step: **{result['bf16_speedup_tokens_per_s']:.2f}x** "
         f"(last-step loss differs by {result['bf16_loss_difference']:.1e}); `train.bf16: auto` uses it only where the "
         "CPU has AMX or AVX512-BF16." if "bf16_speedup_tokens_per_s" in result
         else "- bf16 not run (`--fp32-only`): `train.bf16: auto` leaves it off on a CPU without AMX or AVX512-BF16."),
        f"- Peak extra memory, MiniLM capture / naive: **{result['peak_extra_ratio']:.2f}**",
        f"- Plain teacher forward: {r['teacher-forward']['step_s']:.2f} s; plain student training step: "
        f"{r['student-step']['step_s']:.2f} s; a MiniLM step takes "
        f"**{result['step_over_teacher_forward_plus_student_step']:.2f}x** their sum "
        "(below 1: the early stop skips the teacher's and student's last-layer attention output and FFN).",
        "",
        "Notes:",
        "- On a CPU the step is bound by the Linear layers' matrix products (a profile of the student step: "
        "`aten::mm`/`addmm` ~65% of the time); attention maps at length 128 are a small share, so what capture "
        "saves is mostly the compute it skips: the teacher's last-layer attention output and FFN (~13% of the "
        "teacher) and the student's (~25% of its forward and backward) -- about 1.2x in FLOPs. "
        + ("The issue's 1.5x target is met here." if result["speedup_tokens_per_s"] >= 1.5
           else "The issue's 1.5x target is not reached here." + (
               " On a GPU, where `output_attentions=True` also forces eager attention instead of fused SDPA kernels "
               "and materialises every layer's (B, H, T, T) maps, the gap is expected to be larger."
               if s["device"] == "cpu" else "")),
    ]
    if s.get("dropout", 0.0) and s["device"] == "cpu":
        lines.append("- With the student's dropout the two paths differ in more than the skipped compute: the naive path's "
                     "eager attention draws torch's dropout (one Bernoulli sample at a time) on every layer's (B, H, T, T) "
                     "probabilities, where the capture path, as the trainer, runs `models.cpu_training`'s fast dropout (the "
                     "hidden states' dropout is the fast one in both).")
    if "bf16_speedup_over_naive_bf16_tokens_per_s" in result:
        both = result["bf16_speedup_over_naive_bf16_tokens_per_s"]
        lines.append(f"- Both under bf16 autocast (what `train.bf16: auto` runs where the CPU has AMX or AVX512-BF16) "
                     f"capture over naive is {both:.2f}x: the 1.5x is " + ("met there." if both >= 1.5 else "not reached there."))
    load, cores = result["machine"]["load_average_start"][0], result["machine"]["cores"]
    if s["threads"] > 1 and load + s["threads"] > cores + 0.5:
        lines.append(f"- The 1-minute load average at start ({load:.1f}) suggests other work on the {cores} cores this "
                     f"run's {s['threads']} threads needed (it lags: work stopped a minute before still counts). On a "
                     "busy machine every parallel op can wait for a descheduled thread (~15 ms each), which swamps "
                     "both methods alike; prefer `--threads 1` there.")
    lines += ["", f"Reproduce: `{reproduce(s, stem)}` (see its docstring)."]
    harness.write_report(stem, result, "\n".join(lines), indent=2)


def reproduce(setting: dict, stem: Path) -> str:
    return harness.reproduce_line("bench.distill_throughput", setting, stem, parse)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    harness.add_worker_options(p, METHODS, threads=2, out=RESULTS / "distill_throughput")
    p.add_argument("--teacher", default="zoo:all-minilm-l6-v2")
    p.add_argument("--corpus", default="zoo:corpus-en")
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--dropout", type=float, default=0.0,
                   help="the student's hidden and attention dropout (a recipe's default is the teacher's, 0.1 here; on a "
                        "CPU models.cpu_training's fast dropout, except in the naive path's eager attention: torch's)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", dest="seq_len", type=int, default=128)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--fp32-only", dest="fp32_only", action="store_true",
                   help="leave out the bf16 methods (on a CPU without AMX or AVX512-BF16 a bf16 step is ~15x slower, and "
                        "`train.bf16: auto` does not use it)")
    return p.parse_args(argv)


if __name__ == "__main__":
    harness.worker_or_main(parse, worker, main_run, report)
