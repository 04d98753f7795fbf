"""The relation loss's own cost: MiniLM's KL over (B, H, T, T) relations, forward and backward, as the library
computes it (`distill.losses.relation_kl_sum`: masked keys by an in-place add) against the plain formula it
replaced (an out-of-place `masked_fill`, whose backward masks the gradient in another pass), in one run.

Both give the same loss and gradients bit for bit (checked here, and in tests/test_distill_losses.py); only
the time differs. Two batches: packed corpus blocks (no padding: what distillation feeds) and a batch where
half the sequences are padded from position 100. Shapes: a 384-wide student's 12 heads of 32, batch 32 × 128.

    python -m bench.relation_loss                 # one thread, the CPU's own figures
    python -m bench.relation_loss --threads 2

Writes bench/results/relation_loss_<cpu class>_<threads>t.json and .md. Not a test: nothing asserts a time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from bench import harness
from minilm_deploy.distill.losses import kl_rows, masked_row_sum, relation_kl_sum
from minilm_deploy.hardware import cpu_class, cpu_name

_MIN = torch.finfo(torch.float32).min


def masked_fill_log_probs(left: torch.Tensor, right: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The plain formula: log softmax of the scaled scores with masked keys filled with float32's minimum."""
    scores = torch.matmul(left * left.shape[-1] ** -0.5, right.transpose(-1, -2))  # (B, H, T, T)
    return torch.log_softmax(scores.masked_fill(~mask.bool()[:, None, None, :], _MIN), dim=-1)


def masked_fill_kl_sum(teacher: tuple[torch.Tensor, torch.Tensor], student: tuple[torch.Tensor, torch.Tensor],
                       mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    with torch.no_grad():
        t_logp = masked_fill_log_probs(*teacher, mask)
    rows = kl_rows(t_logp, masked_fill_log_probs(*student, mask))  # (B, H, T)
    return masked_row_sum(rows, mask.bool()), int(mask.sum().item()) * rows.shape[1]


METHODS: dict[str, Callable[..., tuple[torch.Tensor, int]]] = {"masked_fill (before)": masked_fill_kl_sum,
                                                                 "in-place mask (library)": relation_kl_sum}


def _batch(padded: bool, args: argparse.Namespace) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shape = (args.batch, args.heads, args.seq_len, args.head_size)
    tensors = tuple(torch.randn(shape, generator=g) * 2 for _ in range(4))  # teacher q, k; student q, k
    mask = torch.ones(args.batch, args.seq_len, dtype=torch.long)
    if padded:
        mask[::2, _padded_from(args.seq_len):] = 0
    return tensors, mask


def _padded_from(seq_len: int) -> int:
    """Where the padded batch's padded half starts: 100 of 128."""
    return seq_len * 25 // 32


def _step(method: Callable[..., tuple[torch.Tensor, int]], tensors: tuple[torch.Tensor, ...],
          mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    tq, tk, sq0, sk0 = tensors
    sq, sk = sq0.clone().requires_grad_(True), sk0.clone().requires_grad_(True)
    total, count = method((tq, tk), (sq, sk), mask)
    loss = total / count
    loss.backward()
    assert sq.grad is not None and sk.grad is not None
    return loss.detach(), sq.grad, sk.grad


def measure(args: argparse.Namespace, options: list[str]) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    rows = []
    for padded in (False, True):
        tensors, mask = _batch(padded, args)
        outputs = [_step(method, tensors, mask) for method in METHODS.values()]
        same = all(torch.equal(a, b) for a, b in zip(outputs[0], outputs[1], strict=True))
        times: dict[str, list[float]] = {name: [] for name in METHODS}
        for _ in range(args.repeats):  # interleaved, so a slow moment hits both
            for name, method in METHODS.items():
                start = time.perf_counter()
                _step(method, tensors, mask)
                times[name].append(time.perf_counter() - start)
        medians = {name: statistics.median(t) * 1000 for name, t in times.items()}
        before, after = medians.values()
        rows.append({"batch": f"padded (half the sequences from {_padded_from(args.seq_len)})" if padded
                     else "packed blocks (no padding)",
                     "ms": {k: round(v, 1) for k, v in medians.items()}, "speedup": round(before / after, 2),
                     "identical": same})
    return {"cpu": cpu_name(), "cpu_class": cpu_class(), "threads": args.threads,
            "shape": {"batch": args.batch, "heads": args.heads, "seq_len": args.seq_len, "head_size": args.head_size},
            "repeats": args.repeats, "rows": rows, "torch": torch.__version__, "options": options}


def markdown(result: dict[str, Any]) -> str:
    names = list(METHODS)
    lines = [
        "# The relation loss: forward + backward, one KL (teacher and student (q, k) → (B, H, T, T))\n",
        f"CPU {result['cpu']} (class {result['cpu_class']}), {result['threads']} thread(s), torch {result['torch']}; shape "
        f"{result['shape']}; median of {result['repeats']} interleaved repeats. Command: "
        f"`{' '.join(['python -m bench.relation_loss', *result['options']])}`.\n",
        "| batch | " + " | ".join(f"{n} ms" for n in names) + " | speed-up | same loss and gradients |",
        "|---|" + "---:|" * (len(names) + 1) + "---|",
    ]
    for row in result["rows"]:
        lines.append(f"| {row['batch']} | " + " | ".join(str(row["ms"][n]) for n in names)
                     + f" | {row['speedup']:.2f}x | {'bit for bit' if row['identical'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--seq-len", dest="seq_len", type=int, default=128)
    p.add_argument("--head-size", dest="head_size", type=int, default=32)
    args = p.parse_args()
    options = harness.changed_options(vars(args), vars(p.parse_args([])))
    result = measure(args, options)
    out = harness.RESULTS / f"relation_loss_{result['cpu_class']}_{args.threads}t"
    harness.write_report(out.with_suffix(".json"), result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
