"""`minilm distill` as a library call: plan the stages, run each, write Hugging Face folders.

Stages: teacher → assistant(s) → student, each stage's output the next stage's teacher. A stage
trains in `<output>.partial/` (checkpoints, metrics) and, when done, its student is written
atomically to `<output>/`: config.json, model.safetensors, tokenizer files, run.json,
recipe.yaml and metrics.jsonl. With `resume`, finished stages are reused and an interrupted
one continues from its newest checkpoint.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minilm_deploy.config import to_dict
from minilm_deploy.distill import distributed as D
from minilm_deploy.distill.recipe import DistillRecipe, LossSpec, StudentSpec, TrainSpec
from minilm_deploy.errors import InputError, MinilmError
from minilm_deploy.paths import atomic_directory, atomic_write_text, check_writable, os_error_line, remove_tree

if TYPE_CHECKING:
    from torch import Tensor

RUN_FILE = "run.json"


@dataclass(frozen=True)
class StagePlan:
    name: str  # "assistant", "assistant-2", "student"
    student: StudentSpec
    loss: LossSpec
    train: TrainSpec
    output: Path


def plan_stages(recipe, output: Path | None) -> list[StagePlan]:
    """The stages in order; the student goes to `output` (default `<run_dir>/student`)."""
    spec = _section(recipe)
    final = Path(output) if output is not None else recipe.run_dir / "student"
    stages = []
    count = len(spec.assistants)
    for i, assistant in enumerate(spec.assistants, start=1):
        name = "assistant" if count == 1 else f"assistant-{i}"
        folder = final.with_name(name if final.name == "student" else f"{final.name}-{name}")
        stages.append(StagePlan(name, assistant.student, assistant.loss or spec.loss, assistant.train or spec.train, folder))
    stages.append(StagePlan("student", spec.student, spec.loss, spec.train, final))
    return stages


def _section(recipe) -> DistillRecipe:
    if recipe.distill is None:
        raise InputError(f"recipe {recipe.name!r} has no distill: section; see recipes/quickstart.yaml")
    return recipe.distill


def assistant_advice(teacher_shape: tuple[int, int, int], student: StudentSpec, has_assistant: bool) -> str | None:
    """The paper's rule: with at most half the teacher's layers and hidden size, go through a TA
    with the teacher's depth and the student's width."""
    layers, hidden, _ = teacher_shape
    if has_assistant or student.layers * 2 > layers or student.hidden * 2 > hidden:
        return None
    return (
        f"the student ({student.layers}x{student.hidden}) has at most half the teacher's layers and hidden size "
        f"({layers}x{hidden}); the MiniLM paper distils through a teacher assistant: add distill.assistants: "
        f"[{{student: {{layers: {layers}, hidden: {student.hidden}}}}}]"
    )


def run_distill(recipe, *, output: Path | None = None, resume: bool = False) -> dict[str, Any]:
    """Run every stage; returns a summary (the student folder, losses, notes)."""
    from minilm_deploy.distill.fit import check_fits
    from minilm_deploy.models.loading import load_config
    from minilm_deploy.sources import resolve_model

    stages = plan_stages(recipe, output)
    check_fits(_section(recipe), load_config(resolve_model(recipe.teacher)))  # before any weights are read
    for stage in stages:
        check_writable(stage.output, "--output (or the recipe's output_dir)")
    info, _ = D.setup(_section(recipe).train.device)
    try:
        teacher = recipe.teacher
        results = []
        for index, stage in enumerate(stages):
            done = stage.output / RUN_FILE
            if done.is_file():
                if not resume:
                    raise InputError(f"{stage.output} already holds a distilled model; choose another --output or remove it")
                results.append(json.loads(done.read_text(encoding="utf-8")))
            else:
                results.append(run_stage(recipe, stage, teacher, first=index == 0, resume=resume, info=info))
            teacher = str(stage.output)
    finally:
        D.teardown(info)
    final = results[-1]
    return {
        "student": str(stages[-1].output),
        "stages": [{"name": s.name, "output": str(s.output), "final": r.get("final", {})} for s, r in zip(stages, results, strict=True)],
        "final": final.get("final", {}),
        "notes": final.get("notes", []),
    }


def run_stage(recipe, stage: StagePlan, teacher_spec: str, *, first: bool, resume: bool, info: D.DistInfo) -> dict:
    """Distil one stage and write its folder (rank 0); returns its run record."""
    from minilm_deploy.distill.trainer import TrainingJob, check_stage, train_stage
    from minilm_deploy.models.student import build_student
    from minilm_deploy.models.teacher import count_parameters, embedding_parameters, load_encoder

    spec = _section(recipe)
    seed = stage.train.seed if stage.train.seed is not None else recipe.seed
    _, device = D.setup(stage.train.device)
    work = stage.output.with_name(stage.output.name + ".partial")
    started = time.perf_counter()
    teacher = load_encoder(teacher_spec)
    notes, vocab_report = [], None
    if first and spec.vocab.prune:
        teacher, vocab_report = _prune(teacher, spec, seed)
    advice = assistant_advice(teacher.shape, stage.student, bool(spec.assistants))
    if advice and stage.name == "student":
        notes.append(advice)
    blocks, corpus_report = _blocks(spec, stage.train, teacher.tokenizer, seed)
    calibration = _calibration(spec, stage.train, teacher.tokenizer, seed) if stage.student.init == "teacher-pruned" else []
    student, init = build_student(teacher.model, stage.student, seed, calibration)
    job = TrainingJob(teacher.model, student, stage.loss, stage.train, blocks, seed, work, label=stage.name,
                      pruned_channels=init.get("pruned", {}).get("kept_channels"))
    check_stage(job, info.world)
    fresh = not work.exists()
    _check_workdir(recipe, work, resume, info)
    try:
        progress = train_stage(job, info, device, resume=resume)
    except BaseException:
        if fresh and info.is_main and not any((work / "checkpoints").glob("step-*")):
            remove_tree(work)  # nothing worth resuming: leave no trace
        raise
    from minilm_deploy.distill.trainer import use_bf16
    from minilm_deploy.hardware import cpu_class, cpu_name

    record = {
        "stage": stage.name,
        "teacher": {"source": teacher_spec, "path": str(teacher.path), "parameters": count_parameters(teacher.model)},
        "student": {**to_dict(stage.student), "parameters": count_parameters(student),
                    "embedding_parameters": embedding_parameters(student)},
        "loss": to_dict(stage.loss),
        "train": to_dict(stage.train),
        "steps": progress.step, "samples": progress.samples, "tokens": progress.tokens,
        "final": progress.last,
        "blocks": {"count": len(blocks), "tokens": blocks.tokens, "max_length": stage.train.max_length},
        "corpus": corpus_report, "init": init,
        "bf16": use_bf16(stage.train, device), "cpu": {"name": cpu_name(), "class": cpu_class()},
        "vocab": vocab_report, "notes": notes, "world_size": info.world, "device": str(device),
        "elapsed_s": round(time.perf_counter() - started, 2), "versions": _versions(),
        "recipe": to_dict(recipe),
    }
    if info.is_main:
        _write_output(stage.output, work, student, teacher.tokenizer, record, recipe)
    D.barrier(info)
    for note in notes:
        if info.is_main:
            print(f"note: {note}", file=sys.stderr)
    return record


def _check_workdir(recipe, work: Path, resume: bool, info: D.DistInfo) -> None:
    from minilm_deploy.recipe import RECIPE_FILE, recipe_to_yaml

    saved = work / RECIPE_FILE
    if work.exists() and not resume:
        raise InputError(f"{work} holds an interrupted run; continue it with --resume, or remove that folder")
    if saved.is_file() and resume:
        import yaml

        from minilm_deploy.config import quiet_renames
        from minilm_deploy.recipe import recipe_from_dict

        with quiet_renames():  # a recipe.yaml of an older release: its keys under their old names
            before = to_dict(recipe_from_dict(yaml.safe_load(saved.read_text(encoding="utf-8")), source=str(saved)))
        now = to_dict(recipe)
        for key in ("teacher", "seed", "distill"):
            if before.get(key) != now.get(key):
                raise InputError(f"--resume: the recipe's {key} changed since {work} was started; restore it or remove {work}")
    D.barrier(info)  # every process has looked before the main one writes
    if info.is_main:
        try:
            work.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # name the student folder the user asked for, not its .partial work folder
            raise MinilmError(os_error_line(exc, path=work.with_name(work.name.removesuffix(".partial")),
                                            writing=True)) from None
        atomic_write_text(saved, recipe_to_yaml(recipe))
    D.barrier(info)


def _blocks(spec: DistillRecipe, train: TrainSpec, tokenizer, seed: int):
    """The token blocks of the corpus (or of its mixture), and what each source contributed."""
    from minilm_deploy.distill.data import mix_blocks, pack_blocks, shuffled_documents
    from minilm_deploy.sources import read_corpus

    parts = spec.corpus_parts()
    budget = train.total_steps() * train.batch_size * (train.max_length - 2)
    total_weight = sum(part.weight for part in parts)
    pieces = []
    for part in parts:
        docs = shuffled_documents(read_corpus(part.source), seed, spec.max_documents)
        share = math.ceil(budget * part.weight / total_weight)  # this source's tokens, rounded up
        pieces.append((part.source, pack_blocks(docs, tokenizer, train.max_length, max_tokens=share), part.weight))
    if len(pieces) == 1:
        blocks = pieces[0][1]
        return blocks, [{"source": parts[0].source, "share": 1.0, "blocks": len(blocks), "distinct_blocks": len(blocks),
                         "repeated": False}]
    return mix_blocks(pieces, train.total_steps() * train.batch_size)


CALIBRATION_BLOCKS, CALIBRATION_BATCH = 256, 32  # what init: teacher-pruned ranks the teacher's width on


def _calibration(spec: DistillRecipe, train: TrainSpec, tokenizer, seed: int) -> list[tuple[Tensor, Tensor]]:
    """The batches `init: teacher-pruned` measures the teacher on: the first CALIBRATION_BLOCKS blocks of the
    corpus's first source, shuffled with the run's seed, whatever the token budget (0 included)."""
    from minilm_deploy.distill.data import pack_blocks, shuffled_documents
    from minilm_deploy.sources import read_corpus

    docs = shuffled_documents(read_corpus(spec.corpus_parts()[0].source), seed, spec.max_documents)
    blocks = pack_blocks(docs, tokenizer, train.max_length, max_tokens=CALIBRATION_BLOCKS * (train.max_length - 2))
    return [(blocks.input_ids[i : i + CALIBRATION_BATCH], blocks.attention_mask[i : i + CALIBRATION_BATCH])
            for i in range(0, min(len(blocks), CALIBRATION_BLOCKS), CALIBRATION_BATCH)]


def _prune(teacher, spec: DistillRecipe, seed: int):
    from minilm_deploy.distill.data import shuffled_documents
    from minilm_deploy.models.vocab import prune_encoder
    from minilm_deploy.sources import read_corpus

    sources = [part.source for part in spec.corpus_parts()]
    docs = [doc for source in ([spec.vocab.corpus] if spec.vocab.corpus else sources)
            for doc in shuffled_documents(read_corpus(source), seed, spec.vocab.max_documents)]
    if spec.vocab.corpus is not None and spec.vocab.corpus not in sources:
        docs += [doc for source in sources for doc in read_corpus(source)]  # the distillation text must stay representable
    return prune_encoder(teacher, docs, min_count=spec.vocab.min_count)


def _versions() -> dict[str, str]:
    import torch
    import transformers

    from minilm_deploy import __version__

    return {"minilm_deploy": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def _write_output(folder: Path, work: Path, student, tokenizer, record: dict, recipe) -> None:
    from minilm_deploy.models.st_config import copy_sentence_transformers_config
    from minilm_deploy.recipe import save_recipe

    with atomic_directory(folder) as tmp:
        student.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        note = copy_sentence_transformers_config(Path(record["teacher"]["path"]), tmp, student.config.hidden_size)
        if note:
            record.setdefault("notes", []).append(note)
        save_recipe(recipe, tmp)
        metrics = work / "metrics.jsonl"
        if metrics.is_file():
            shutil.copyfile(metrics, tmp / "metrics.jsonl")
        atomic_write_text(tmp / RUN_FILE, json.dumps(record, indent=2, default=str))
    remove_tree(work)
