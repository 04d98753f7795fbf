"""How close a width-pruned student starts to the layer copy it narrows, before any training: is MPNet's shared head
set what holds its pruned students back?

MPNet adds one relative-position score table to every layer's attention scores, one column per head. A student of
it keeps one table, so `models/prune.py` keeps the same heads in every layer (ranked on their sum), where a BERT
student keeps each layer's best heads. This benchmark measures what that costs, against the alternative a user
would try first: each layer's own best heads, placed in the student's head slots so that heads sharing a slot
have similar position columns (an assignment per layer, iterated with the slots' columns as importance-weighted
means), the table made of those means. It also tries the LayerNorms' gains rescaled by the ratio of their input's
spread over the kept channels to its spread over all channels (the statistics a narrower LayerNorm sees).
And the library's `student.refit` (`models/prune.py`): each layer's output Linears refit by least squares on the
calibration text so that the residual sums match the copy's.

Every student is compared with the teacher's layer copy at full width (the same layers, `init: teacher-layers`),
on held-out training texts of the task: the mean cosine of each real token's last hidden state with the copy's at
the kept channels, the same for the mean-pooled sentence vectors, and the relative error ‖s − c‖ / ‖c‖. Heads:
the share of the picked layers' head importance (mean context-vector norm) the kept heads hold.

    python -m bench.prune_fidelity                                            # all-mpnet-base-v2 → 6×384
    python -m bench.prune_fidelity --teacher zoo:all-minilm-l6-v2 --layers 3 --hidden 192

Writes bench/results/prune_fidelity/<teacher>-<layers>x<hidden>.json and .md. No training: a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import functools
import itertools
from collections.abc import Callable
from copy import deepcopy
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from bench import harness
from minilm_deploy.hardware import cpu_class, cpu_name
from minilm_deploy.models.adapters import adapter_for, base_model
from minilm_deploy.models.prune import (
    Batch,
    Importance,
    Kept,
    PrunedShape,
    choose,
    copy_pruned,
    measure_importance,
    run_hooked,
)
from minilm_deploy.models.student import build_student, full_width_copy, student_layer_picks
from minilm_deploy.models.student_spec import StudentSpec
from minilm_deploy.models.teacher import load_encoder
from minilm_deploy.sources import load_task

OUT = harness.RESULTS / "prune_fidelity"


def batches(tokenizer: Any, texts: list[str], batch_size: int = 32, max_length: int = 64) -> list[Batch]:
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        out.append((enc["input_ids"], enc["attention_mask"]))
    return out


def head_share(importance: Importance, picks: list[int], heads: list[Tensor]) -> float:
    """The share of the picked layers' head importance that the kept heads hold."""
    kept = sum(float(importance.heads[p][h].sum()) for p, h in zip(picks, heads, strict=True))
    return kept / sum(float(importance.heads[p].sum()) for p in picks)


def bucket_weights(model: nn.Module, table: Tensor, length: int) -> Tensor:
    """(buckets,): how often each relative-position bucket occurs among the (query, key) pairs of `length` tokens."""
    positions = torch.arange(length)
    buckets = base_model(model).encoder.relative_position_bucket(positions[None, :] - positions[:, None],
                                                                  num_buckets=table.shape[0])
    counts = torch.bincount(buckets.flatten(), minlength=table.shape[0]).float()
    return counts / counts.sum()


def slot_heads(importance: Importance, picks: list[int], table: Tensor, weights: Tensor, start: Tensor,
               rounds: int = 5) -> tuple[list[Tensor], Tensor]:
    """Each picked layer's best heads, ordered into the student's slots so that a slot's heads have similar
    position columns; returns the per-layer head order and the slots' columns (buckets, slots)."""
    slots = len(start)
    if slots > 8:
        raise SystemExit(f"prune_fidelity: {slots} head slots: the exhaustive slot assignment stops at 8")
    chosen = [torch.sort(torch.argsort(-importance.heads[p], stable=True)[:slots]).values for p in picks]
    orders = torch.tensor(list(itertools.permutations(range(slots))))  # (slots!, slots)
    centers = table[:, start].T.clone()  # (slots, buckets)
    ordered = chosen
    for _ in range(rounds):
        ordered = []
        for p, heads in zip(picks, chosen, strict=True):
            # cost[i, j]: head i of this layer in slot j, weighted by the head's importance
            cost = importance.heads[p][heads][:, None] * (((table[:, heads].T[:, None, :] - centers[None]) ** 2)
                                                          * weights).sum(-1)
            best = orders[cost[orders, torch.arange(slots)].sum(-1).argmin()]  # best[j]: the head in slot j
            ordered.append(heads[best])
        for slot in range(slots):
            w = torch.stack([importance.heads[p][h[slot]] for p, h in zip(picks, ordered, strict=True)])
            columns = torch.stack([table[:, h[slot]] for h in ordered])
            centers[slot] = (w[:, None] * columns).sum(0) / w.sum()
    return ordered, centers.T


def rescale_norms(student: nn.Module, reference: nn.Module, channels: Tensor, calibration: list[Batch]) -> None:
    """Multiply each LayerNorm gain of `student` by the mean ratio (over real tokens of `calibration`) of the
    spread of the same LayerNorm's input in `reference` over the kept channels to its spread over all channels."""
    ratios: dict[str, list[float]] = {}

    def attach(mask_now: Callable[[], Tensor]) -> list[RemovableHandle]:
        def record(module: nn.Module, args: tuple[Tensor, ...], name: str) -> None:
            x = args[0].float()[mask_now().bool()]  # (tokens, width)
            ratio = x[:, channels].std(-1, unbiased=False) / x.std(-1, unbiased=False)
            total = ratios.setdefault(name, [0.0, 0.0])
            total[0] += float(ratio.sum())
            total[1] += len(ratio)
        return [m.register_forward_pre_hook(functools.partial(record, name=n))
                for n, m in reference.named_modules() if isinstance(m, nn.LayerNorm)]

    run_hooked(reference, calibration, attach)
    with torch.no_grad():
        for name, module in student.named_modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.mul_(ratios[name][0] / ratios[name][1])


@torch.no_grad()
def fidelity(student: nn.Module, copy: nn.Module, channels: Tensor, held_out: list[Batch]) -> dict[str, float]:
    token_cos, pooled_cos, errors = [], [], []
    for ids, mask in held_out:
        reference = copy(input_ids=ids, attention_mask=mask).last_hidden_state[..., channels]
        output = student(input_ids=ids, attention_mask=mask).last_hidden_state
        real = mask.bool()
        token_cos.append(nn.functional.cosine_similarity(output[real], reference[real], dim=-1).mean())
        weights = mask[..., None].float()
        pooled = [(x * weights).sum(1) / weights.sum(1) for x in (output, reference)]
        pooled_cos.append(nn.functional.cosine_similarity(*pooled, dim=-1).mean())
        errors.append((output[real] - reference[real]).norm() / reference[real].norm())
    return {name: round(float(torch.stack(values).mean()), 4)
            for name, values in (("token_cosine", token_cos), ("pooled_cosine", pooled_cos), ("relative_error", errors))}


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    encoder = load_encoder(args.teacher)
    teacher, tokenizer = encoder.model, encoder.tokenizer
    texts = [example.text for example in load_task(args.task).splits["train"]]
    if len(texts) < args.calibration + args.held_out:
        raise SystemExit(f"prune_fidelity: {args.task} has {len(texts)} training texts; lower --calibration/--held-out")
    calibration = batches(tokenizer, texts[:args.calibration])
    held_out = batches(tokenizer, texts[-args.held_out:])
    layers = encoder.shape[0]
    spec = StudentSpec(layers=args.layers, hidden=args.hidden, init="teacher-pruned")
    picks = student_layer_picks(spec, layers)
    copy = full_width_copy(teacher, picks)
    library, record = build_student(teacher, spec, 0, calibration)
    library.eval()
    importance = measure_importance(teacher, calibration)
    shared = adapter_for(teacher.config.model_type).score_bias is not None
    kept = choose(importance, picks, args.hidden, PrunedShape(heads=library.config.num_attention_heads,
                                                              ffn=library.config.intermediate_size), shared_heads=shared)
    rows = [{"student": "library (" + ("one head set for every layer" if shared else "each layer's best heads") + ")",
             "heads": round(head_share(importance, picks, kept.heads), 4), **fidelity(library, copy, kept.channels, held_out)}]
    rescaled = deepcopy(library)  # the same pruned copy: its teacher is not ranked again
    rescale_norms(rescaled, copy, kept.channels, calibration[:8])
    rows.append({"student": "library, LayerNorm gains rescaled", "heads": rows[0]["heads"],
                 **fidelity(rescaled.eval(), copy, kept.channels, held_out)})
    refit, refit_record = build_student(teacher, replace(spec, refit=True), 0, calibration)
    rows.append({"student": "library, `refit: true` (output Linears refit by least squares)", "heads": rows[0]["heads"],
                 **fidelity(refit.eval(), copy, kept.channels, held_out),
                 "refit_relative_error": refit_record["pruned"]["refit"]["relative_error"]})
    if shared:
        table = base_model(teacher).encoder.relative_attention_bias.weight.detach()
        weights = bucket_weights(teacher, table, 64)
        heads, columns = slot_heads(importance, picks, table, weights, kept.heads[0])
        per_layer, _ = build_student(teacher, StudentSpec(layers=args.layers, hidden=args.hidden, init="random",
                                                         heads=library.config.num_attention_heads,
                                                         ffn=library.config.intermediate_size), 0)
        copy_pruned(teacher, per_layer, picks, Kept(channels=kept.channels, heads=heads, neurons=kept.neurons))
        with torch.no_grad():
            base_model(per_layer).encoder.relative_attention_bias.weight.copy_(columns)
        rows.append({"student": "each layer's best heads, position columns matched by slot",
                     "heads": round(head_share(importance, picks, heads), 4),
                     **fidelity(per_layer.eval(), copy, kept.channels, held_out),
                     "slots": [h.tolist() for h in heads]})
    return {"teacher": args.teacher, "student": f"{args.layers}x{args.hidden}", "teacher_layers": picks,
            "task": args.task, "calibration_texts": args.calibration, "held_out_texts": args.held_out,
            "kept_heads_library": record["pruned"]["kept_heads"], "rows": rows, "cpu": cpu_name(),
            "cpu_class": cpu_class(), "threads": args.threads}


def markdown(result: dict[str, Any], command: str) -> str:
    lines = [f"# Width-pruned {result['student']} students of {result['teacher']}, before training",
             "", f"Against the teacher's layers {result['teacher_layers']} copied at full width, on "
             f"{result['held_out_texts']} held-out training texts of {result['task']} (ranked on "
             f"{result['calibration_texts']} others). CPU: {result['cpu']} ({result['cpu_class']}).", "",
             "| student | head importance kept | token cosine | pooled cosine | relative error |", "|---|---|---|---|---|"]
    lines += [f"| {r['student']} | {r['heads']:.3f} | {r['token_cosine']:.4f} | {r['pooled_cosine']:.4f} | "
              f"{r['relative_error']:.4f} |" for r in result["rows"]]
    return "\n".join(lines + ["", f"Reproduce: `{command}`"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="zoo:all-mpnet-base-v2")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--task", default="zoo:rotten-tomatoes")
    parser.add_argument("--calibration", type=int, default=512, help="training texts the pruning ranks on")
    parser.add_argument("--held-out", type=int, default=256, help="other training texts the fidelity is measured on")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    result = run(args)
    command = "python -m bench.prune_fidelity " + " ".join(harness.changed_options(
        {k: v for k, v in vars(args).items() if k != "threads"}, vars(parser.parse_args([]))))
    stem = OUT / f"{Path(args.teacher.removeprefix('zoo:')).name}-{args.layers}x{args.hidden}"
    harness.write_report(stem, result, markdown(result, command.strip()))
    print(markdown(result, command.strip()))


if __name__ == "__main__":
    main()
