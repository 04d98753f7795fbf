"""The MiniLM paper's ablation in miniature (issue 8), with the project's own library, resumable.

    .venv/bin/python -m bench.ablation run                       # the default plan, in order; skips what is done
    .venv/bin/python -m bench.ablation run --only 3x384:e:rotten-tomatoes:1
    .venv/bin/python -m bench.ablation table                     # bench/results/ablation/ablation.md + .png

Teacher all-MiniLM-L6-v2 (6x384, 12 heads); students 3x384 and 4x384 (12 heads). Every distilled
variant gets the same budget (BUDGET: optimizer steps x batch x sequence, on zoo:corpus-en); the
CPU time of each run is recorded. Variants:

  a  the teacher, fine-tuned                      e  attention + value relation (MiniLM v1)
  b  random initialisation, fine-tuned directly   f  (e) through a teacher assistant (3x384 only: the
  c  the teacher's layers 1,3,5 (DistilBERT-style)    4x384 (e) student is the assistant)
  d  attention distributions only                 g  MiniLMv2 relations (q-q, k-k, v-v)
                                                  h  (e) starting from (c)'s initialisation
                                                  i  (h) with a 10x lower learning rate (1e-4):
                                                     beyond the issue; the copied layers are pretrained
  j  (c) fine-tuned with task distillation        k  (h) fine-tuned with task distillation
     (beyond the issue: soft targets from the group's teacher fine-tuned on the task, variant (a) seed 1,
     T = 2, weight 0.5: `finetune.distill` of the project's own recipes)

Beyond the ablation, the same driver runs the issue's other students (groups): all-mpnet-base-v2
(12x768) into 6x384 (variant e: random init, the width differs) and, beyond the issue, its own layers
as a 6x768 student (variant c: what initialisation alone keeps), and multilingual-e5-small (12x384)
into 6x384 on zoo:corpus-multilingual, with and without vocabulary pruning (variant h), fine-tuned on
English polarity with the settings of recipes/polarity-xling.yaml and scored zero-shot on French,
Dutch and German.

Work goes to runs/ablation/<size>/<variant>/ (students, fine-tuned models: large, not committed);
one JSON per finished run goes to bench/results/ablation/ (small, committed as results come).
Distillation resumes from its last checkpoint; a fine-tuning run interrupted is redone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bench import harness

WORK = harness.WORK / "ablation"
RESULTS = harness.RESULTS / "ablation"
TEACHER = "zoo:all-minilm-l6-v2"
CORPUS = "zoo:corpus-en"
TEACHER_LAYERS = {TEACHER: 6, "zoo:all-mpnet-base-v2": 12, "zoo:multilingual-e5-small": 12}
# Student groups: teacher, the teacher's label in results, student layers, distillation corpus, vocabulary pruning,
# student hidden size.
GROUPS = {
    "3x384": (TEACHER, "6x384", 3, CORPUS, False, 384),
    "4x384": (TEACHER, "6x384", 4, CORPUS, False, 384),
    "mpnet-6x384": ("zoo:all-mpnet-base-v2", "mpnet-12x768", 6, CORPUS, False, 384),
    "mpnet-6x768": ("zoo:all-mpnet-base-v2", "mpnet-12x768", 6, CORPUS, False, 768),
    "e5-6x384": ("zoo:multilingual-e5-small", "e5-12x384", 6, "zoo:corpus-multilingual", False, 384),
    "e5-6x384-pruned": ("zoo:multilingual-e5-small", "e5-12x384", 6, "zoo:corpus-multilingual", True, 384),
}
BUDGET = {"steps": 500, "batch_size": 32, "max_length": 64, "lr": 1.0e-3, "warmup": 0.1, "weight_decay": 0.01, "max_grad_norm": 1.0,
          "checkpoint_every": 50, "log_every": 50}
FINETUNE = {"max_length": 64, "batch_size": 32, "lr": 1.0e-4, "epochs": 1, "eval_splits": ["test"]}
TASKS = {"rotten-tomatoes": "zoo:rotten-tomatoes", "trec": "zoo:trec", "r8": "zoo:r8", "polarity": "zoo:polarity-multilingual"}
# Per-task changes to FINETUNE; polarity: as recipes/polarity-xling.yaml (its teacher: bench/results/finetune/).
TASK_FINETUNE = {"polarity": {"max_length": 128, "epochs": 2, "freeze_embeddings": True,
                              "eval_splits": ["test", "test-fr", "test-nl", "test-de"]}}
VARIANTS = {
    "a": "teacher fine-tuned",
    "b": "random init, no distillation",
    "c": "teacher layers (DistilBERT-style init), no distillation",
    "d": "attention distributions only",
    "e": "attention + value relation (MiniLM)",
    "f": "(e) through a teacher assistant",
    "g": "MiniLMv2 relations",
    "h": "(e) from (c)'s initialisation",
    "i": "(h) with lr 1e-4",
    "j": "(c) + task distillation from (a)",
    "k": "(h) + task distillation from (a)",
}
# Variants that fine-tune another variant's student with soft targets from the fine-tuned teacher (seed 1).
TASK_DISTILLED = {"j": "c", "k": "h"}
TASK_DISTILL = {"temperature": 2.0, "weight": 0.5}
# The order of the default plan: first every variant on rotten-tomatoes with seed 1, then the other
# seeds, then trec and r8 (one seed) for a, b, c, e, h, then the 4x384 student.
PLAN: list[tuple[str, str, str, int]] = (
    [("3x384", v, "rotten-tomatoes", 1) for v in "cbehdga"]
    + [("4x384", "e", "rotten-tomatoes", 1), ("3x384", "f", "rotten-tomatoes", 1)]
    + [("3x384", v, "rotten-tomatoes", s) for s in (2, 3) for v in "abcdefgh"]
    + [("mpnet-6x384", "a", "rotten-tomatoes", 1), ("mpnet-6x384", "e", "rotten-tomatoes", 1)]
    + [("3x384", "i", "rotten-tomatoes", s) for s in (1, 2, 3)]
    + [("e5-6x384", "h", "polarity", 1), ("e5-6x384-pruned", "h", "polarity", 1)]
    + [("3x384", v, t, 1) for t in ("trec", "r8") for v in "abceh"]
    + [("mpnet-6x768", "c", "rotten-tomatoes", 1)]  # beyond the issue: the base teacher's own layers, no distillation
    + [("4x384", v, "rotten-tomatoes", s) for s in (1, 2, 3) for v in "bcdegh" if (v, s) != ("e", 1)]
    + [("mpnet-6x768", "j", "rotten-tomatoes", 1)]  # beyond the issue: toward the base-size target
    + [("3x384", v, "rotten-tomatoes", s) for s in (1, 2, 3) for v in "jk"]
)


def distill_recipe(size: str, variant: str) -> dict[str, Any]:
    """The recipe (as a dict) of one distilled or initialised student."""
    teacher_spec, _, layers, corpus, prune, hidden = GROUPS[size]
    loss = {"d": {"kind": "attention"}, "g": {"kind": "minilmv2", "relation_heads": 12}}.get(variant, {"kind": "minilm"})
    teacher = str(student_dir("4x384", "e")) if variant == "f" else teacher_spec
    init = "teacher-layers" if variant in ("c", "h", "i") else "random"
    student: dict[str, Any] = {"layers": layers, "hidden": hidden, "init": init}
    if init == "teacher-layers":  # the picks the recorded ablation used: every k-th layer from 0 (issue 14 changed the default)
        student["init_layers"] = [i * (TEACHER_LAYERS[teacher_spec] // layers) for i in range(layers)]
    train = {**BUDGET, "lr": 1.0e-4} if variant == "i" else dict(BUDGET)
    if variant in ("b", "c"):  # no distillation: the library writes the initialised student after 0 steps
        train["steps"] = 0
    return {"name": f"ablation-{size}-{variant}", "teacher": teacher, "seed": 0, "output_dir": str(WORK / size / variant),
            "distill": {"corpus": corpus, "student": student, "loss": loss, "train": train, "vocab": {"prune": prune}}}


def recipe_budget(recipe: Any) -> dict[str, Any]:
    from minilm_deploy.config import to_dict

    return to_dict(recipe.distill.train)


def student_dir(size: str, variant: str) -> Path:
    return WORK / size / variant / "student"


def ensure_student(size: str, variant: str) -> Path | str:
    """The encoder a variant fine-tunes: the teacher, an initialised student, or a distilled one."""
    if variant == "a":
        return GROUPS[size][0]
    if variant in TASK_DISTILLED:
        return ensure_student(size, TASK_DISTILLED[variant])
    folder = student_dir(size, variant)
    if (folder / "run.json").is_file() or (folder / "init.json").is_file():  # init.json: written by an older driver
        return folder
    if variant == "f" and not (student_dir("4x384", "e") / "run.json").is_file():
        ensure_student("4x384", "e")
    if variant not in ("b", "c"):
        print(f"ablation: distilling {size} ({variant}: {VARIANTS[variant]})", file=sys.stderr)
    run = harness.distill_student(distill_recipe(size, variant), "ablation")
    distilled = variant not in ("b", "c")
    record = {"steps": run["steps"], "tokens": run["tokens"]}
    if distilled:
        record |= {"final": run["final"], "summary": run.get("notes"), "student_parameters": run["student"]["parameters"],
                   "teacher_parameters": run["teacher"]["parameters"],
                   "embedding_parameters": run["student"]["embedding_parameters"], "vocab": run.get("vocab")}
    _save("distill", size, variant, None, None, {
        **record, "teacher": distill_recipe(size, variant)["teacher"],
        "budget": BUDGET if distilled else None,
        "cpu_seconds_this_session": run["cpu_seconds_this_session"], "wall_seconds_this_session": run["wall_seconds_this_session"],
        "note": "cpu/wall cover this session's part only when the distillation was resumed",
    })
    return folder


def finetune(size: str, variant: str, task: str, seed: int, *, rerun: bool = False) -> None:
    """One fine-tuning run; skipped when its result is recorded, unless `rerun` (its model folder is needed)."""
    from minilm_deploy.config import from_dict
    from minilm_deploy.finetune.api import finetune_model
    from minilm_deploy.finetune.recipe import FinetuneRecipe

    if not rerun and _result_path("finetune", size, variant, task, seed).is_file():
        return
    model = ensure_student(size, variant)
    settings = {**FINETUNE, **TASK_FINETUNE.get(task, {})}
    teacher = teacher_task_model(size, task) if variant in TASK_DISTILLED else None
    if teacher is not None:
        settings["distill"] = {"teacher": str(teacher), **TASK_DISTILL}
    ft = from_dict(FinetuneRecipe, {"task": TASKS[task], "models": ["student"], **settings}, source="ablation")
    out = WORK / size / variant / f"{task}-s{seed}"
    print(f"ablation: fine-tuning {size} {variant} on {task}, seed {seed}", file=sys.stderr)
    cpu = harness.cpu_seconds()
    metrics = finetune_model(str(model), ft, out, (seed,), overwrite=True, label=f"{size}-{variant}-{task}-s{seed}",
                             distill_teacher=teacher)
    _save("finetune", size, variant, task, seed, {
        "metric": metrics["metric"], "test": metrics["splits"]["test"], "train_seconds": metrics["train_seconds"],
        "wall_seconds": metrics["wall_seconds"], "cpu_seconds": round(harness.cpu_seconds() - cpu, 1), "finetune": settings,
        "splits": metrics["splits"],
        "data": metrics.get("data"),
    })


def teacher_task_model(size: str, task: str) -> Path:
    """The group's teacher fine-tuned on `task` (variant a, seed 1), fine-tuned first if no group has it yet."""
    same_teacher = [group for group, spec in GROUPS.items() if spec[0] == GROUPS[size][0]]
    done = [WORK / group / "a" / f"{task}-s1" for group in same_teacher]
    found = next((folder for folder in done if (folder / "metrics.json").is_file()), None)
    if found is not None:
        return found
    finetune(size, "a", task, 1, rerun=True)  # its result may be recorded (committed) while runs/ is not there
    return WORK / size / "a" / f"{task}-s1"


def _label(size: str, variant: str) -> str:
    """The name results use: the group's teacher label for variant a (one teacher serves several groups)."""
    return GROUPS[size][1] if variant == "a" else size


def _result_path(kind: str, size: str, variant: str, task: str | None, seed: int | None) -> Path:
    size = _label(size, variant)
    name = f"{size}-{variant}-distill" if kind == "distill" else f"{size}-{variant}-{task}-s{seed}"
    return RESULTS / f"{name}.json"


def _save(kind: str, size: str, variant: str, task: str | None, seed: int | None, record: dict[str, Any]) -> None:
    harness.save_record(_result_path(kind, size, variant, task, seed), {
        "kind": kind, "size": _label(size, variant), "variant": variant, "description": VARIANTS[variant],
        "task": task, "seed": seed, **record})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--only", action="append", default=[], metavar="SIZE:VARIANT:TASK:SEED")
    sub.add_parser("table")
    args = parser.parse_args()
    if args.command == "table":
        from bench.ablation_table import write_table

        write_table(RESULTS)
        return
    plan = [(s, v, t, int(n)) for s, v, t, n in (o.split(":") for o in args.only)] if args.only else PLAN
    for size, variant, task, seed in plan:
        if variant == "a" and size == "4x384":
            continue  # the same teacher as 3x384's
        finetune(size, variant, task, seed)


if __name__ == "__main__":
    main()
