"""Students that beat layer truncation (issue 14): the evidence, with the project's own library, resumable.

    .venv/bin/python -m bench.students plan                       # the default plan, one line per run, [done] marked
    .venv/bin/python -m bench.students run                        # the default plan, in order; skips what is recorded
    .venv/bin/python -m bench.students run --only 3x384:c1-both:1M:rotten-tomatoes:1 --threads 1
    .venv/bin/python -m bench.students table                      # students.md, summary.json, crossover.png

A run is GROUP:VARIANT:TOKENS:TASK:SEED. Groups (teacher → student shape):

  3x384, 4x384     zoo:all-minilm-l6-v2 (6x384) → 3 or 4 layers x 384
  mpnet-6x768      zoo:all-mpnet-base-v2 (12x768) → 6 layers x 768 (the new picks)
  mpnet-7x768      zoo:all-mpnet-base-v2 (12x768) → 7 layers x 768 (the new picks: [0, 2, 4, 5, 7, 9, 11])
  mpnet-6x384      zoo:all-mpnet-base-v2 (12x768) → 6 layers x 384 (random init; hidden-state parts through
                   the learned projection 384 → 768)
  3x192            zoo:all-minilm-l6-v2 (6x384) → 3 layers x 192: half the depth and half the width, as mpnet-6x384
                   is of its teacher, at a fraction of the cost (its teacher fine-tunes in ~20 min on the AVX2
                   EPYC, mpnet in ~1.8 h): where mpnet-6x384's task-distillation recipes are tried first

Variants (TOKENS is the distillation budget in input tokens: 0, 250k, 1M, 4M, 16M; 0 = no distillation):

  teacher     the group's teacher, fine-tuned (the reference)
  c           layer copy with the old picks (every k-th layer from 0: 6→3 [0, 2, 4]), no distillation
  c1          layer copy with the new picks (first and last kept: 6→3 [0, 2, 5]), no distillation
  c1-minilm   c1 + MiniLM relations (attention + value KL of the last layer)
  c1-hidden   c1 + hidden-state alignment only (token cosine + pooled-embedding MSE on the last layer)
  c1-both     c1 + relations + hidden-state alignment
  c1-both-rt  c1-both on a corpus mixture: half zoo:corpus-en, half rotten-tomatoes' own training texts
  rand-both   random initialisation + relations + hidden-state alignment
  p1          width-pruned copy of the new picks (Minitron: the residual channels, heads and FFN neurons most active
              on the corpus kept; `init: teacher-pruned`), no distillation: for the narrower groups (mpnet-6x384)
  p1-both     p1 + relations + hidden-state alignment
  c1-kd       c1, fine-tuned with task distillation: the fine-tuned teacher of the same task and seed gives soft
              targets next to the hard labels (finetune.distill: T 2, weight 0.5); the teacher is fine-tuned first
  c1-both-kd  c1-both, fine-tuned the same way
  t1          layer copy, new picks, of the *fine-tuned* teacher of the same task and seed, no distillation
              (truncation of the task model: the baseline a user who has the fine-tuned teacher gets for free)
  t1-both     t1 + relations + hidden-state alignment to that fine-tuned teacher on the task's own training
              texts (task-specific distillation, TinyBERT's second stage without its data augmentation);
              t1-kd and t1-both-kd are fine-tuned with task distillation as c1-kd
  t1-pruned   p1 of the fine-tuned teacher of the same task and seed, ranked on the task's training texts
              (task-specific width pruning); t1-pruned-kd fine-tuned with task distillation as c1-kd;
              t1-pruned-both(-kd): t1-pruned distilled as t1-both (then fine-tuned as t1-both-kd);
              t1-pruned-kd-e8: t1-pruned-kd for 8 epochs; t1-pruned-kd-aug: t1-pruned-kd on the training texts
              plus 3 word-swapped copies of each, soft targets only (finetune.distill.augment: 3), 2 epochs: the
              same optimizer steps as -e8; t1-pruned-kd-aug7: 7 copies, 1 epoch (the same steps again);
              t1-pruned-kd-aug-hid: t1-pruned-kd-aug plus hidden-state distillation from that teacher
              (finetune.distill.hidden: 1, TinyBERT's intermediate layers: each layer against the one it was
              copied from, through the learned projection)
  t1-pruned-refit  t1-pruned with each layer's attention-output and FFN-output Linears refit by least squares, bottom
              layer first, so that its residual sums match the full-width copy's on the same texts
              (`student.refit: true`); t1-pruned-refit-kd-aug: fine-tuned as t1-pruned-kd-aug
  t1-wide     t1 at the teacher's width (only the depth cut: 3x384 in the 3x192 group, 6x768 in mpnet-6x384);
              t1-wide-kd-aug: fine-tuned as t1-pruned-kd-aug
  t1-steps    pruning in two steps (depth, then width): t1-pruned made from t1-wide-kd-aug's fine-tuned model of
              the same seed instead of from the teacher; t1-steps-kd-aug: fine-tuned as t1-pruned-kd-aug, its soft
              targets from the teacher (the same fine-tuning as t1-pruned-kd-aug, after t1-wide-kd-aug's);
              t1-steps-kd-aug-ta: its soft targets from t1-wide-kd-aug's model instead (a teacher assistant,
              TAKD); t1-steps-kd-aug-lr3: at lr 3e-4; t1-steps-kd-aug-e4: for 4 epochs (each one change)
  t1-steps-refit  t1-steps with the width step's output Linears refit by least squares to t1-wide-kd-aug's model (as
              t1-pruned-refit to the teacher's copy); t1-steps-refit-kd-aug: fine-tuned as t1-steps-kd-aug
  l6          not made from the teacher: zoo:all-minilm-l6-v2 itself (a 6x384 encoder its authors distilled with
              MiniLM), fine-tuned alone: the off-the-shelf small model (mpnet-6x384 only: its shape); l6-kd and
              l6-kd-aug: fine-tuned with task distillation from the mpnet teacher, as t1-pruned-kd(-aug) (the
              teacher reads the texts with its own tokenizer)

Fine-tuning (every variant the same): the whole task, 3 epochs, the best dev epoch kept, length 64, lr 1e-4.
Work goes to runs/students/ (models, not committed); one JSON per finished run to bench/results/students/runs/
(committed as results come). A distillation or fine-tuning run resumes from its last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import harness

WORK = harness.WORK / "students"
RESULTS = harness.RESULTS / "students"
RUNS = RESULTS / "runs"


@dataclass(frozen=True)
class Group:
    teacher: str
    teacher_label: str  # one teacher serves several groups: its fine-tuned results are shared under this name
    layers: int
    hidden: int


GROUPS = {
    "3x384": Group("zoo:all-minilm-l6-v2", "minilm-6x384", 3, 384),
    "4x384": Group("zoo:all-minilm-l6-v2", "minilm-6x384", 4, 384),
    "mpnet-6x768": Group("zoo:all-mpnet-base-v2", "mpnet-12x768", 6, 768),
    "mpnet-6x384": Group("zoo:all-mpnet-base-v2", "mpnet-12x768", 6, 384),
    "mpnet-7x768": Group("zoo:all-mpnet-base-v2", "mpnet-12x768", 7, 768),
    "3x192": Group("zoo:all-minilm-l6-v2", "minilm-6x384", 3, 192),
}
@dataclass(frozen=True)
class Variant:
    """What a variant is, said once: how its student starts, what it is distilled with, on which text, from
    which teacher, and how it is fine-tuned. A variant with no loss parts is not distilled (it takes 0 tokens)."""

    description: str
    loss: tuple[str, ...] = ()  # "relations" (MiniLM's attention + value KL), "alignment" (hidden + embedding)
    init: str = "teacher-layers"  # or "random", or "teacher-pruned" (the picked layers narrowed to the group's width)
    old_picks: bool = False  # the picks the project used before issue 14 (every k-th layer from 0)
    corpus: str = "general"  # "general": corpus-en; "general+rt": half corpus-en, half RT's training texts; "task"
    task_teacher: bool = False  # copied from and distilled from the fine-tuned teacher of the run's task and seed
    kd: bool = False  # fine-tuned with task distillation from the fine-tuned teacher of the same task and seed
    student: str = ""  # a -kd variant: the variant whose student it fine-tunes (itself otherwise)
    tag: str = ""  # the fine-tuning folder's suffix (<task>-s<seed>-<tag>): "kd" for task distillation
    finetune: dict[str, Any] = field(default_factory=dict)  # over FINETUNE (epochs, ...)
    task_distill: dict[str, Any] = field(default_factory=dict)  # over TASK_DISTILL (augment, ...)
    pretrained: str = ""  # the student is this pretrained model itself, of the group's shape, not made from the teacher
    # the student's width: "group" (the group's), or a step on the way to it at the group's depth: "teacher" (the
    # teacher's width), "midway" (halfway between the two: 288 in 3x192, 576 in mpnet-6x384)
    width: str = "group"
    # copied or pruned from this variant's fine-tuned model of the same task and seed instead of from the teacher
    # (pruning in steps; its task distillation still comes from the teacher)
    source: str = ""
    # a -kd variant: the soft targets come from this variant's fine-tuned model of the same task and seed (a teacher
    # assistant) instead of from the teacher
    kd_from: str = ""
    # init "teacher-pruned": the pruned copy's output Linears refit by least squares (`student.refit`)
    refit: bool = False

    @property
    def distilled(self) -> bool:
        return bool(self.loss)


FINETUNE = {"max_length": 64, "batch_size": 32, "lr": 1.0e-4, "epochs": 3, "keep_best": True, "eval_splits": ["test"]}
TASK_DISTILL = {"temperature": 2.0, "weight": 0.5}


def _kd(base: Variant, description: str, name: str, tag: str = "kd", kd_from: str = "", **finetune: Any) -> Variant:
    """`base`'s student fine-tuned with task distillation (`finetune`: what differs from FINETUNE and
    TASK_DISTILL, each key where it belongs; `kd_from`: see Variant)."""
    return replace(base, description=description, kd=True, student=name, tag=tag, kd_from=kd_from,
                   finetune={k: v for k, v in finetune.items() if k in FINETUNE},
                   task_distill={k: v for k, v in finetune.items() if k not in FINETUNE})


def student_variant(name: str) -> str:
    """The variant whose student `name` fine-tunes: itself, or for a -kd variant the one it adds task distillation to."""
    return VARIANTS[name].student or name


_BOTH = ("relations", "alignment")
_C1 = Variant("layer copy, new picks (first and last kept), no distillation")
_C1_BOTH = Variant("c1 + relations + hidden-state alignment", _BOTH)
_P1 = Variant("width-pruned layer copy, new picks: the channels, heads and FFN neurons most active on the corpus kept "
              "(Minitron), no distillation", init="teacher-pruned")
_T1 = Variant("layer copy, new picks, of the fine-tuned teacher (same task and seed), no distillation", task_teacher=True)
_T1_BOTH = Variant("t1 + relations + hidden-state alignment to that teacher on the task's training texts", _BOTH,
                   corpus="task", task_teacher=True)
_T1_PRUNED = Variant("width-pruned layer copy, new picks, of the fine-tuned teacher (same task and seed), ranked on "
                     "the task's training texts, no distillation", init="teacher-pruned", corpus="task", task_teacher=True)
_L6 = Variant("zoo:all-minilm-l6-v2 itself (6x384, MiniLM-distilled by its authors), fine-tuned alone: the "
              "off-the-shelf small encoder a user could take instead", pretrained="zoo:all-minilm-l6-v2")
_T1_PRUNED_BOTH = replace(_T1_PRUNED, description="t1-pruned + relations + hidden-state alignment to that teacher on "
                          "the task's training texts", loss=_BOTH)
_T1_WIDE = replace(_T1, description="t1 at the teacher's width, only the depth cut (the first of two pruning steps; "
                   "a 3x384 student in the 3x192 group, 6x768 in mpnet-6x384)",
                   width="teacher")
_T1_STEPS = replace(_T1_PRUNED, description="t1-pruned made from t1-wide-kd-aug's fine-tuned model (same seed) instead "
                    "of from the teacher: depth, then width", source="t1-wide-kd-aug")
_T1_MID = replace(_T1_PRUNED, description="t1-pruned made from t1-wide-kd-aug's fine-tuned model at the width midway "
                  "between the teacher's and the group's (3x288 in 3x192): the second of three steps", source="t1-wide-kd-aug",
                  width="midway")
_T1_STEPS3 = replace(_T1_PRUNED, description="t1-pruned made from t1-mid-kd-aug's fine-tuned model: depth, then width "
                     "in two steps", source="t1-mid-kd-aug")
_T1_REFIT = replace(_T1_PRUNED, description="t1-pruned with each layer's output Linears refit by least squares to "
                    "the full-width copy's residual sums on the same texts (`student.refit`)", refit=True)
_T1_STEPS_REFIT = replace(_T1_STEPS, description="t1-steps with its output Linears refit by least squares to the "
                          "residual sums of t1-wide-kd-aug's model, the one it is pruned from (`student.refit`)", refit=True)
_AUG = {"epochs": 2, "augment": 3}  # TinyBERT's augmentation: 3 word-swapped copies of each text, 2 epochs
VARIANTS: dict[str, Variant] = {
    "teacher": Variant("the teacher, fine-tuned"),
    "c": Variant("layer copy, old picks (every k-th from 0), no distillation", old_picks=True),
    "c1": _C1,
    "c1-minilm": Variant("c1 + MiniLM relations", ("relations",)),
    "c1-hidden": Variant("c1 + hidden-state alignment", ("alignment",)),
    "c1-both": _C1_BOTH,
    "c1-both-rt": Variant("c1-both on corpus-en + rotten-tomatoes training texts (half each)", _BOTH, corpus="general+rt"),
    "rand-both": Variant("random init + relations + hidden-state alignment", _BOTH, init="random"),
    "p1": _P1,
    "p1-both": Variant("p1 + relations + hidden-state alignment", _BOTH, init="teacher-pruned"),
    "c1-kd": _kd(_C1, "c1, fine-tuned with task distillation from the fine-tuned teacher (same seed)", "c1"),
    "c1-both-kd": _kd(_C1_BOTH, "c1-both, fine-tuned with task distillation from the fine-tuned teacher (same seed)",
                      "c1-both"),
    "t1": _T1,
    "t1-kd": _kd(_T1, "t1, fine-tuned with task distillation from that teacher", "t1"),
    "t1-both": _T1_BOTH,
    "t1-both-kd": _kd(_T1_BOTH, "t1-both, fine-tuned with task distillation from that teacher", "t1-both"),
    "t1-pruned": _T1_PRUNED,
    "t1-pruned-kd": _kd(_T1_PRUNED, "t1-pruned, fine-tuned with task distillation from that teacher", "t1-pruned"),
    "t1-pruned-kd-e8": _kd(_T1_PRUNED, "t1-pruned, fine-tuned with task distillation from that teacher for 8 epochs",
                           "t1-pruned", "kd-e8", epochs=8),
    "t1-pruned-kd-aug": _kd(_T1_PRUNED, "t1-pruned, fine-tuned with task distillation on its training texts plus 3 "
                            "word-swapped copies of each labelled by that teacher (TinyBERT's augmentation), 2 epochs",
                            "t1-pruned", "kd-aug", **_AUG),
    "t1-pruned-kd-aug7": _kd(_T1_PRUNED, "t1-pruned-kd-aug with 7 copies of each text for 1 epoch (the same steps, "
                             "twice the distinct texts)", "t1-pruned", "kd-aug7", epochs=1, augment=7),
    "t1-pruned-kd-aug-hid": _kd(_T1_PRUNED, "t1-pruned-kd-aug plus hidden-state distillation from that teacher (each "
                                "layer against the one it was copied from, through a learned projection)",
                                "t1-pruned", "kd-aug-hid", **_AUG, hidden=1.0),
    "t1-pruned-both": _T1_PRUNED_BOTH,
    "t1-wide": _T1_WIDE,
    "t1-wide-kd-aug": _kd(_T1_WIDE, "t1-wide (the depth cut only: 3x384 in the 3x192 group), fine-tuned as "
                          "t1-pruned-kd-aug", "t1-wide", "kd-aug", **_AUG),
    "t1-steps": _T1_STEPS,
    "t1-steps-kd-aug": _kd(_T1_STEPS, "t1-steps, fine-tuned as t1-pruned-kd-aug (soft targets from the teacher)",
                           "t1-steps", "kd-aug", **_AUG),
    "t1-steps-kd-aug-ta": _kd(_T1_STEPS, "t1-steps, fine-tuned as t1-steps-kd-aug but its soft targets from "
                              "t1-wide-kd-aug's model (the 3x384 middle step: a teacher assistant, TAKD) instead of from "
                              "the teacher", "t1-steps", "kd-aug-ta", kd_from="t1-wide-kd-aug", **_AUG),
    "t1-steps-kd-aug-lr3": _kd(_T1_STEPS, "t1-steps-kd-aug at lr 3e-4 (three times the default)", "t1-steps", "kd-aug-lr3",
                               **_AUG | {"lr": 3.0e-4}),
    "t1-steps-kd-aug-e4": _kd(_T1_STEPS, "t1-steps-kd-aug for 4 epochs (twice the optimizer steps)", "t1-steps", "kd-aug-e4",
                              **_AUG | {"epochs": 4}),
    "t1-mid": _T1_MID,
    "t1-mid-kd-aug": _kd(_T1_MID, "t1-mid (3x288 in the 3x192 group), fine-tuned as t1-pruned-kd-aug (soft targets from "
                         "the teacher)", "t1-mid", "kd-aug", **_AUG),
    "t1-steps3": _T1_STEPS3,
    "t1-steps3-kd-aug": _kd(_T1_STEPS3, "t1-steps3, fine-tuned as t1-pruned-kd-aug (soft targets from the teacher)",
                            "t1-steps3", "kd-aug", **_AUG),
    "t1-pruned-refit": _T1_REFIT,
    "t1-pruned-refit-kd-aug": _kd(_T1_REFIT, "t1-pruned-refit, fine-tuned as t1-pruned-kd-aug", "t1-pruned-refit", "kd-aug",
                                  **_AUG),
    "t1-steps-refit": _T1_STEPS_REFIT,
    "t1-steps-refit-kd-aug": _kd(_T1_STEPS_REFIT, "t1-steps-refit, fine-tuned as t1-steps-kd-aug (soft targets from the "
                                 "teacher)", "t1-steps-refit", "kd-aug", **_AUG),
    "l6": _L6,
    "l6-kd": _kd(_L6, "l6, fine-tuned with task distillation from the group's fine-tuned teacher (its own tokenizer)", "l6"),
    "l6-kd-aug": _kd(_L6, "l6, fine-tuned with task distillation from the group's fine-tuned teacher on its training "
                           "texts plus 3 word-swapped copies of each, 2 epochs (as t1-pruned-kd-aug)", "l6", "kd-aug", **_AUG),
    "t1-pruned-both-kd": _kd(_T1_PRUNED_BOTH, "t1-pruned-both, fine-tuned with task distillation from that teacher",
                             "t1-pruned-both"),
}
TOKENS = {"0": 0, "250k": 256_000, "1M": 1_024_000, "4M": 4_096_000, "16M": 16_384_000}
CORPUS = "zoo:corpus-en"
TRAIN = {"batch_size": 32, "max_length": 64, "warmup": 0.1, "weight_decay": 0.01, "max_grad_norm": 1.0, "checkpoint_every": 50,
         "log_every": 25}
LR = {"teacher-layers": 1.0e-4, "teacher-pruned": 1.0e-4, "random": 1.0e-3}  # copied layers are pretrained: 1e-3 undid them
# A pruned student has fewer heads than its teacher (heads keep their size): its relations are compared after
# re-splitting both models' Q/K/V into this many relation heads (MiniLMv2's way), which divides every group's width.
PRUNED_RELATION_HEADS = 12
RELATIONS = {"attention": 1.0, "value": 1.0}
ALIGNMENT = {"hidden": 1.0, "embedding": 1.0}
TASKS = {"rotten-tomatoes": "zoo:rotten-tomatoes", "trec": "zoo:trec"}

# The default plan, most decisive first: every objective at seed 1, then the seeds that decide the claim,
# then trec, the crossover curve, 4x384 and the base-size teacher.
_3 = "3x384"
PLAN: list[str] = (
    [f"{_3}:teacher:0:rotten-tomatoes:1", f"{_3}:c:0:rotten-tomatoes:1", f"{_3}:c1:0:rotten-tomatoes:1"]
    + [f"{_3}:{v}:1M:rotten-tomatoes:1" for v in ("c1-both", "c1-minilm", "c1-hidden", "rand-both", "c1-both-rt")]
    + [f"{_3}:{v}:{t}:rotten-tomatoes:{s}" for s in (2, 3) for v, t in
       (("teacher", "0"), ("c", "0"), ("c1", "0"), ("c1-both", "1M"))]
    + [f"{_3}:c1-kd:0:rotten-tomatoes:{s}" for s in (1, 2, 3)]
    + [f"{_3}:{v}:{t}:rotten-tomatoes:{s}" for s in (1, 2, 3) for v, t in (("t1-both-kd", "1M"), ("t1-kd", "0"), ("t1", "0"))]
    + [f"{_3}:{v}:{t}:rotten-tomatoes:{s}" for s in (4, 5) for v, t in  # two more seeds: the claim was borderline at 3
       (("teacher", "0"), ("c", "0"), ("c1", "0"), ("t1-both-kd", "1M"), ("t1-kd", "0"), ("c1-kd", "0"), ("t1", "0"))]
    + [f"{_3}:{v}:{t}:trec:1" for v, t in (("teacher", "0"), ("c", "0"), ("c1", "0"), ("c1-both", "1M"))]
    + [f"{_3}:c1-both:{t}:rotten-tomatoes:1" for t in ("250k", "4M", "16M")]
    + [f"4x384:{v}:{t}:rotten-tomatoes:{s}" for s in (1, 2, 3) for v, t in (("c", "0"), ("c1", "0"), ("c1-both", "1M"))]
    + [f"4x384:{v}:{t}:trec:1" for v, t in (("c", "0"), ("c1", "0"), ("c1-both", "1M"))]
    + [f"4x384:{v}:1M:rotten-tomatoes:1" for v in ("rand-both", "c1-minilm", "c1-hidden")]
    + ["mpnet-6x768:teacher:0:rotten-tomatoes:1", "mpnet-6x768:c1:0:rotten-tomatoes:1",
       "mpnet-6x768:c1-both:1M:rotten-tomatoes:1", "mpnet-6x384:rand-both:1M:rotten-tomatoes:1"]
    + ["mpnet-7x768:c1:0:rotten-tomatoes:1", "mpnet-6x384:p1:0:rotten-tomatoes:1", "mpnet-6x384:p1-both:1M:rotten-tomatoes:1",
       "mpnet-6x384:t1-pruned-kd:0:rotten-tomatoes:1", "mpnet-6x384:t1-pruned-both-kd:1M:rotten-tomatoes:1"]
    + [f"mpnet-6x384:{v}:0:rotten-tomatoes:{s}" for s in (1, 2) for v in ("t1-pruned-kd-e8", "t1-pruned-kd-aug")]
    + ["mpnet-6x384:t1-pruned-kd-aug:0:rotten-tomatoes:3"]
    + [f"mpnet-6x384:t1-pruned-kd-aug7:0:rotten-tomatoes:{s}" for s in (1, 2, 3)]
    + [f"mpnet-6x384:{v}:0:rotten-tomatoes:{s}" for s in (1, 2, 3) for v in ("l6-kd-aug", "l6", "l6-kd")]
    + [f"3x192:{v}:0:rotten-tomatoes:{s}" for s in (1, 2, 3) for v in ("t1-pruned-kd-aug", "t1-pruned-kd-aug-hid")]
    # on mpnet, the refit pruned copy first: on the proxy it gained as much as two steps (+0.69, 3 of 3 seeds) with one
    # fine-tuning, and it lifts mpnet's pruned start the most (token cosine 0.44 -> 0.78); then the two-step recipe
    # (+0.7 on the proxy); the hidden-state distillation did not gain (-0.4)
    + ["mpnet-6x384:t1-pruned-refit-kd-aug:0:rotten-tomatoes:1"]
    # then the refit inside the two-step recipe's width step: on the proxy it gained over both the two-step recipe and
    # the refit in one step at every seed (2026-12-08, bench/results/students-proxy-avx512/)
    + [f"mpnet-6x384:t1-steps-refit-kd-aug:0:rotten-tomatoes:{s}" for s in (1, 2, 3)]
    + [f"mpnet-6x384:t1-pruned-refit-kd-aug:0:rotten-tomatoes:{s}" for s in (2, 3)]
    + [f"{g}:t1-steps-kd-aug:0:rotten-tomatoes:{s}" for g in ("3x192", "mpnet-6x384") for s in (1, 2, 3)]
    + [f"mpnet-6x384:t1-pruned-kd-aug-hid:0:rotten-tomatoes:{s}" for s in (1, 2, 3)]
    # three steps (the width halfway first) gained nothing over two on the proxy: not queued for mpnet
    + [f"3x192:t1-steps3-kd-aug:0:rotten-tomatoes:{s}" for s in (1, 2, 3)]
    + [f"3x192:t1-steps-kd-aug-{change}:0:rotten-tomatoes:{s}" for s in (1, 2, 3) for change in ("ta", "lr3", "e4")]
    # the pruned copy refit by least squares before its fine-tuning: on the proxy first
    + [f"3x192:t1-pruned-refit-kd-aug:0:rotten-tomatoes:{s}" for s in (1, 2, 3)]
    # the refit inside the two-step recipe's width step: on the proxy first
    + [f"3x192:t1-steps-refit-kd-aug:0:rotten-tomatoes:{s}" for s in (1, 2, 3)]
)


@dataclass(frozen=True)
class Run:
    group: str
    variant: str
    tokens: str
    task: str
    seed: int

    @classmethod
    def parse(cls, text: str) -> Run:
        try:
            group, variant, tokens, task, seed = text.split(":")
            run = cls(group, variant, tokens, task, int(seed))
        except ValueError:
            raise SystemExit(f"students.py: {text!r}: expected GROUP:VARIANT:TOKENS:TASK:SEED") from None
        for value, known, what in ((group, GROUPS, "group"), (variant, VARIANTS, "variant"), (tokens, TOKENS, "tokens"),
                                   (task, TASKS, "task")):
            if value not in known:
                raise SystemExit(f"students.py: unknown {what} {value!r}; known: {', '.join(known)}")
        if VARIANTS[variant].distilled == (tokens == "0"):
            undistilled = ", ".join(name for name, v in VARIANTS.items() if not v.distilled)
            raise SystemExit(f"students.py: {text}: {undistilled} take 0 tokens, distilled variants more")
        return run

    @property
    def label(self) -> str:
        """The name results use (a teacher's runs are shared by every group of that teacher)."""
        return GROUPS[self.group].teacher_label if self.variant == "teacher" else self.group

    @property
    def kd(self) -> bool:
        """Fine-tuned with task distillation from the fine-tuned teacher of the same task and seed."""
        return VARIANTS[self.variant].kd

    @property
    def task_teacher(self) -> bool:
        """Distilled from (and copied from) the fine-tuned teacher of this run's task and seed."""
        return VARIANTS[self.variant].task_teacher

    @property
    def student_key(self) -> str:
        """The encoder's folder name: a -kd variant fine-tunes the same student as its variant without -kd;
        a task-teacher student is one per task and seed (its teacher is)."""
        key = f"{self.label}-{self.base().variant}-{self.tokens}"
        return f"{key}-{self.task}-s{self.seed}" if self.task_teacher else key

    @property
    def output(self) -> Path:
        tag = VARIANTS[self.variant].tag
        return WORK / self.student_key / f"{self.task}-s{self.seed}{'-' + tag if tag else ''}"

    def base(self) -> Run:
        """The same run without task distillation (the student it fine-tunes)."""
        return Run(self.group, student_variant(self.variant), self.tokens, self.task, self.seed)

    def same_seed(self, variant: str) -> Run:
        """`variant`'s undistilled run of this group, task and seed (a fine-tuning whose model this run uses)."""
        return Run(self.group, variant, "0", self.task, self.seed)

    def teacher_run(self) -> Run:
        return self.same_seed("teacher")

    def kd_teacher_run(self) -> Run:
        """The fine-tuning whose model gives a -kd run its soft targets: the teacher's, or a teacher assistant's."""
        return self.same_seed(VARIANTS[self.variant].kd_from or "teacher")

    def source_run(self) -> Run:
        """The fine-tuning whose model this run's student is copied or pruned from (a variant with a `source`)."""
        return self.same_seed(VARIANTS[self.base().variant].source)

    @property
    def result(self) -> Path:
        return RUNS / f"{self.label}-{self.variant}-{self.tokens}-{self.task}-s{self.seed}.json"


def old_picks(teacher_layers: int, student_layers: int) -> list[int]:
    """The picks the project used before issue 14: every k-th layer from 0."""
    k = teacher_layers // student_layers
    return [i * k for i in range(student_layers)]


def student_width(variant: Variant, group_hidden: int, teacher_hidden: int) -> int:
    """The width `variant`'s student has in a group `group_hidden` wide whose teacher is `teacher_hidden` wide."""
    if variant.width == "group":
        return group_hidden
    if not teacher_hidden:
        raise ValueError(f"a {variant.width!r}-wide student depends on the teacher's width: give teacher_hidden")
    return {"teacher": teacher_hidden, "midway": (teacher_hidden + group_hidden) // 2}[variant.width]


def distill_recipe(run: Run, teacher_layers: int, teacher_hidden: int = 0) -> dict[str, Any]:
    """The `minilm distill` recipe that makes `run`'s student (`teacher_hidden`: the group teacher's width, needed
    by a variant whose `width` is not the group's)."""
    group = GROUPS[run.group]
    run = run.base()
    variant = VARIANTS[run.variant]
    hidden = student_width(variant, group.hidden, teacher_hidden)
    student: dict[str, Any] = {"layers": group.layers, "hidden": hidden, "init": variant.init}
    if variant.old_picks:
        student["init_layers"] = old_picks(teacher_layers, group.layers)
    if variant.refit:
        student["refit"] = True
    weights: dict[str, float] = {}  # not distilled (0 steps): the default loss, never used
    if variant.distilled:  # the loss's defaults: relations on, alignment off
        weights = RELATIONS if "relations" in variant.loss else {part: 0.0 for part in RELATIONS}
        weights = weights | (ALIGNMENT if "alignment" in variant.loss else {})
    corpus: Any = {
        "general": CORPUS,
        "general+rt": [{"source": CORPUS, "weight": 0.5}, {"source": TASKS["rotten-tomatoes"], "weight": 0.5}],
        "task": [{"source": TASKS[run.task], "weight": 1.0}],  # the task's training texts only (never eval text)
    }[variant.corpus]
    teacher = str(run.source_run().output) if variant.source else (
        str(run.teacher_run().output) if run.task_teacher else group.teacher)
    return {
        "name": f"students-{run.student_key}", "teacher": teacher, "seed": 0,
        "output_dir": str(WORK / run.student_key),
        "distill": {"corpus": corpus, "student": student, "loss": {"kind": "minilm", "weights": weights, **(
                        {"relation_heads": PRUNED_RELATION_HEADS} if variant.init == "teacher-pruned" else {})},
                    "train": {**TRAIN, "tokens": TOKENS[run.tokens], "lr": LR[variant.init]}},
    }


def ensure_student(run: Run) -> str:
    """The encoder this run fine-tunes: the teacher itself, or a student (distilled, or only initialised). A
    student whose folder is gone but whose distillation is recorded is redone, and the redo is recorded beside
    the record (`...-distill-remade-<cpu class>.json`, kind "distill-remade"): the seeds fine-tuned before keep
    the record that describes their student, and each fine-tuning record says where its student was made
    (`student_made_on`)."""
    from minilm_deploy.hardware import cpu_class

    group = GROUPS[run.group]
    if run.variant == "teacher":
        return group.teacher
    if pretrained := VARIANTS[run.variant].pretrained:
        return _of_the_groups_shape(pretrained, run.group)
    folder = WORK / run.student_key / "student"
    if (folder / "run.json").is_file():
        return str(folder)
    layers, hidden, _ = _shape(group.teacher)
    if run.task_teacher:  # its teacher is the fine-tuned teacher of this task and seed: fine-tune that first
        finetune(run.teacher_run(), needed_as_teacher=True)
    if VARIANTS[run.variant].source:  # made from another variant's fine-tuned model: that first
        finetune(run.source_run(), needed_as_teacher=True)
        layers = group.layers
    print(f"students: distilling {run.student_key} ({VARIANTS[run.variant].description})", file=sys.stderr)
    recipe = distill_recipe(run, layers, hidden)
    record = harness.distill_student(recipe, "students")
    first = RUNS / f"{run.student_key}-distill.json"
    remade = first.is_file()
    harness.save_record(first.with_name(f"{first.stem}-remade-{cpu_class()}.json") if remade else first, {
        "kind": "distill-remade" if remade else "distill", "student": run.group, "variant": run.variant, "tokens": record["tokens"],
        "teacher": recipe["teacher"], **({"task": run.task, "seed": run.seed} if run.task_teacher else {}),
        "tokens_label": run.tokens, "steps": record["steps"], "final": record["final"], "init": record["init"],
        "student_parameters": record["student"]["parameters"], "teacher_parameters": record["teacher"]["parameters"],
        "bf16": record.get("bf16"), "cpu": record.get("cpu"), "device": device_label(), "recipe": record["recipe"]["distill"],
        "cpu_seconds_this_session": record["cpu_seconds_this_session"],
        "wall_seconds_this_session": record["wall_seconds_this_session"],
    })
    return str(folder)


def _shape(model: str) -> tuple[int, int, int]:
    """(layers, hidden, heads) of a model reference, from its config alone."""
    from transformers import AutoConfig

    from minilm_deploy.models.adapters import attention_shape
    from minilm_deploy.sources import resolve_model

    return attention_shape(AutoConfig.from_pretrained(resolve_model(model)))


def _of_the_groups_shape(model: str, group: str) -> str:
    """`model`, after checking that its layers and width are the group's (a pretrained student is not resized)."""
    layers, hidden, _ = _shape(model)
    if (layers, hidden) != (GROUPS[group].layers, GROUPS[group].hidden):
        raise SystemExit(f"students.py: {model} is {layers}x{hidden}, not a {group} student; use it with a group of its shape")
    return model


def finetune(run: Run, needed_as_teacher: bool = False) -> None:
    """Fine-tune one run unless its result is recorded. A teacher whose model folder is gone is redone when a
    -kd or t1 run needs it; the redo is recorded beside the result (`...-remade-<cpu class>.json`, kind
    "finetune-remade"), which stays the row's figure."""
    from minilm_deploy.config import from_dict
    from minilm_deploy.finetune.api import finetune_model
    from minilm_deploy.finetune.recipe import FinetuneRecipe
    from minilm_deploy.hardware import cpu_class

    if run.result.is_file() and (not needed_as_teacher or (run.output / "model.safetensors").is_file()):
        return
    remade = run.result.is_file()  # only the model folder is missing: its recorded result stays as it was
    teacher = None
    if run.kd:  # the soft targets come from the fine-tuned teacher (or assistant) of the same task and seed
        kd_teacher = run.kd_teacher_run()
        finetune(kd_teacher, needed_as_teacher=True)
        teacher = kd_teacher.output
    model = ensure_student(run.base())
    variant = VARIANTS[run.variant]
    ft_options, kd_options = FINETUNE | variant.finetune, TASK_DISTILL | variant.task_distill
    options = {"task": TASKS[run.task], "models": ["student"], **ft_options} | ({"distill": kd_options} if run.kd else {})
    ft = from_dict(FinetuneRecipe, options, source="students")
    print(f"students: fine-tuning {run.student_key} on {run.task}, seed {run.seed}"
          + (f", task distillation from {teacher}" if teacher else ""), file=sys.stderr)
    cpu = harness.cpu_seconds()
    metrics = finetune_model(model, ft, run.output, (run.seed,), overwrite=True, distill_teacher=teacher,
                             label=run.result.stem, resume=True)
    result = run.result.with_name(f"{run.result.stem}-remade-{cpu_class()}.json") if remade else run.result
    harness.save_record(result, {
        "kind": "finetune-remade" if remade else "finetune", "student": run.label, "variant": run.variant, "tokens": TOKENS[run.tokens],
        "tokens_label": run.tokens, "task": run.task, "seed": run.seed, "metric": metrics["metric"],
        "test": metrics["splits"]["test"], "dev": metrics["splits"]["dev"], "best_epoch": metrics["runs"][0]["best_epoch"],
        "train_seconds": metrics["train_seconds"], "wall_seconds": metrics["wall_seconds"],
        "cpu_seconds": round(harness.cpu_seconds() - cpu, 1), "cpu_class": cpu_class(), "device": device_label(), "bf16": metrics["runs"][0]["bf16"],
        "finetune": {**ft_options, "distill": kd_options if run.kd else None},
        "model": model, "data": metrics.get("data"), "student_made_on": _made_on(Path(model)),
    })


def _made_on(folder: Path) -> dict[str, Any] | None:
    """Where the fine-tuned student was distilled (its run.json): which of its distillation records, the first or a
    `-distill-remade-<cpu class>` one, made the model this seed fine-tuned. None for the teacher."""
    run = folder / "run.json"
    if not run.is_file():
        return None
    made = json.loads(run.read_text(encoding="utf-8"))
    return {"cpu_class": (made.get("cpu") or {}).get("class"), "bf16": made.get("bf16"),
            "final_loss": (made.get("final") or {}).get("loss")}


def use_folders(results: Path, work: Path) -> None:
    """Where results (`results`/runs/*.json and the tables) and models (`work`) go."""
    global RESULTS, RUNS, WORK
    RESULTS, RUNS, WORK = results, results / "runs", work


def device_label() -> str:
    """Where torch trains here: "cpu", or "cuda: <GPU name>" (the library picks CUDA when torch sees one)."""
    import torch

    return f"cuda: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--only", action="append", default=[], metavar="GROUP:VARIANT:TOKENS:TASK:SEED")
    run.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    plan_parser = sub.add_parser("plan")
    table = sub.add_parser("table")
    for command in (run, plan_parser, table):  # one machine's runs kept apart from another's (a GPU's, say)
        command.add_argument("--results", type=Path, default=RESULTS,
                             help=f"the folder of runs/*.json and the tables (default {RESULTS})")
        command.add_argument("--work", type=Path, default=WORK, help=f"the folder of the models (default {WORK})")
    args = parser.parse_args()
    use_folders(args.results, args.work)
    if args.command == "table":
        from bench.students_table import write_all

        write_all(RUNS, RESULTS)
        return
    plan = [Run.parse(text) for text in (args.only if args.command == "run" and args.only else PLAN)]
    if args.command == "plan":
        for item in plan:
            print(("[done] " if item.result.is_file() else "       ") + ":".join(map(str, vars(item).values())))
        return
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        for item in plan:
            finetune(item)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the trainer has checkpointed; no traceback
        raise SystemExit("students: stopped; the last checkpoint is kept: run the same command to resume") from None


if __name__ == "__main__":
    main()
