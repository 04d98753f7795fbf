"""Student construction: the teacher's architecture and vocabulary, a free depth and width.

`init: random` is the paper's choice; `init: teacher-layers` copies the embeddings and some of
the teacher's layers (the DistilBERT-style baseline; needs equal widths): by default spread over
the teacher with its first and last layer kept (DistilBERT's and sentence-transformers' layer
reduction), or the 0-based layers `student.init_layers` names. `init: teacher-pruned` copies the same
layers narrowed to the student's width (`models/prune.py`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from minilm_deploy.errors import InputError
from minilm_deploy.models.adapters import adapter_for, attention_shape, model_config
from minilm_deploy.models.prune import Batch, Kept, copy_pruned, prune_into, pruned_shape, refit
from minilm_deploy.models.student_spec import StudentSpec


def student_config(teacher_config, spec: StudentSpec):
    """The teacher's config with the student's layers, hidden size, heads, FFN size and dropout."""
    adapter = adapter_for(teacher_config.model_type)
    _, _, teacher_heads = attention_shape(teacher_config)
    heads, ffn = spec.heads or teacher_heads, spec.ffn_size
    if spec.init == "teacher-pruned":  # heads keep the teacher's size; the FFN narrows to ffn (4 × hidden by default)
        shape = pruned_shape(teacher_config, spec.hidden, spec.ffn_size, spec.heads)
        heads, ffn = shape.heads, shape.ffn
    elif spec.init == "teacher-layers" and spec.ffn is None:  # copied layers keep the teacher's FFN
        ffn = getattr(teacher_config, adapter.ffn_attr)
    if spec.hidden % heads:
        raise InputError(
            f"distill.student.hidden={spec.hidden} is not divisible by {heads} heads; "
            f"set distill.student.heads to a divisor of {spec.hidden}"
        )
    config = copy.deepcopy(teacher_config)
    setattr(config, adapter.layers_attr, spec.layers)
    setattr(config, adapter.hidden_attr, spec.hidden)
    setattr(config, adapter.heads_attr, heads)
    setattr(config, adapter.ffn_attr, ffn)
    if spec.dropout is not None:
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout"):
            if hasattr(config, name):
                setattr(config, name, spec.dropout)
    if hasattr(config, "embedding_size"):  # factorised embeddings would not match the new width
        config.embedding_size = spec.hidden
    return config


def build_student(teacher: nn.Module, spec: StudentSpec, seed: int,
                  calibration: Iterable[Batch] = ()) -> tuple[nn.Module, dict[str, Any]]:
    """A new base encoder shaped by `spec`, initialised at random (seeded) or from the teacher, and a record of how
    (for run.json). `calibration`: the (input_ids, attention_mask) batches `init: teacher-pruned` ranks the
    teacher's channels, heads and neurons on."""
    from transformers import AutoModel

    config = student_config(teacher.config, spec)
    torch.manual_seed(seed)
    student = AutoModel.from_config(config)
    student.config.architectures = [type(student).__name__]
    record: dict[str, Any] = {"init": spec.init}
    if spec.copies_layers:
        picks = student_layer_picks(spec, attention_shape(teacher.config)[0])
        record["teacher_layers"] = picks
        if spec.init == "teacher-pruned":
            calibration = list(calibration)
            record["pruned"] = prune_into(teacher, student, picks, calibration)
            if spec.refit:
                record["pruned"]["refit"] = refit(student, full_width_copy(teacher, picks),
                                                  torch.tensor(record["pruned"]["kept_channels"]), calibration)
        else:
            copy_teacher_layers(teacher, student, picks)
    return student, record


def full_width_copy(teacher: nn.Module, picks: list[int]) -> nn.Module:
    """The teacher's layers `picks` at its own width (what `refit` reconstructs a pruned student against), in eval
    mode."""
    from transformers import AutoModel

    spec = StudentSpec(layers=len(picks), hidden=attention_shape(teacher.config)[1], init="teacher-layers")
    copy = AutoModel.from_config(student_config(teacher.config, spec))
    copy_teacher_layers(teacher, copy, picks)
    return copy.eval()


def teacher_layer_picks(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher layers spread evenly with the first and the last kept, 0-based: 6 → 3 gives 0, 2, 5;
    6 → 4 gives 0, 2, 3, 5; 12 → 6 gives 0, 2, 4, 7, 9, 11 (a half rounds down). A single student
    layer copies the teacher's last one: a last-layer loss then starts where it aims."""
    if student_layers > teacher_layers:
        raise InputError(
            f"init: teacher-layers or teacher-pruned needs at most the teacher's {teacher_layers} layers, got {student_layers}; "
            "use init: random"
        )
    if student_layers == 1:
        return [teacher_layers - 1]
    span, gaps = teacher_layers - 1, student_layers - 1
    return [-(-(2 * i * span - gaps) // (2 * gaps)) for i in range(student_layers)]  # ceil(i·span/gaps − ½), exactly


def check_layer_picks(picks: list[int] | tuple[int, ...], teacher_layers: int, student_layers: int) -> list[int]:
    """`student.init_layers` as given: 0-based, in range, strictly increasing, one per student layer."""
    picks = list(picks)
    where = f"distill.student.init_layers={picks}"
    if len(picks) != student_layers:
        raise InputError(f"{where}: give one teacher layer per student layer ({student_layers}), 0-based")
    if any(p < 0 or p >= teacher_layers for p in picks):
        raise InputError(f"{where}: the teacher's layers are 0..{teacher_layers - 1} (0-based)")
    if any(b <= a for a, b in zip(picks, picks[1:], strict=False)):
        raise InputError(f"{where}: list the layers in increasing order, each once")
    return picks


def student_layer_picks(spec: StudentSpec, teacher_layers: int) -> list[int]:
    """The teacher layers a `teacher-layers` student copies: `init_layers` if given, else the default spread."""
    if spec.init_layers is not None:
        return check_layer_picks(spec.init_layers, teacher_layers, spec.layers)
    return teacher_layer_picks(teacher_layers, spec.layers)


def copy_teacher_layers(teacher: nn.Module, student: nn.Module, picks: list[int]) -> None:
    """Copy every parameter outside the layers (embeddings, shared biases) and teacher layer
    `picks[i]` into student layer i: a width pruning that keeps every channel, head and neuron."""
    t_layers, t_hidden, t_heads = attention_shape(teacher.config)
    s_layers, s_hidden, s_heads = attention_shape(student.config)
    adapter = adapter_for(model_config(teacher).model_type)
    t_ffn = getattr(teacher.config, adapter.ffn_attr)
    s_ffn = getattr(student.config, adapter.ffn_attr)
    if (t_hidden, t_heads, t_ffn) != (s_hidden, s_heads, s_ffn):
        raise InputError(
            f"init: teacher-layers needs the teacher's hidden size, heads and FFN size ({t_hidden}, {t_heads}, "
            f"{t_ffn}), got ({s_hidden}, {s_heads}, {s_ffn}); use init: random"
        )
    everything = Kept(channels=torch.arange(t_hidden), heads=[torch.arange(t_heads)] * s_layers,
                      neurons=[torch.arange(t_ffn)] * s_layers)
    copy_pruned(teacher, student, check_layer_picks(picks, t_layers, s_layers), everything)
