"""Student construction: the teacher's architecture and vocabulary, a free depth and width.

`init: random` is the paper's choice; `init: teacher-layers` copies the embeddings and every
k-th layer of the teacher (the DistilBERT-style baseline; needs equal widths).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from minilm_deploy.distill.recipe import StudentSpec
from minilm_deploy.errors import InputError
from minilm_deploy.models.adapters import adapter_for, attention_shape, layer_list


def student_config(teacher_config, spec: StudentSpec):
    """The teacher's config with the student's layers, hidden size, heads, FFN size and dropout."""
    adapter = adapter_for(teacher_config.model_type)
    _, _, teacher_heads = attention_shape(teacher_config)
    heads = spec.heads or teacher_heads
    if spec.hidden % heads:
        raise InputError(
            f"distill.student.hidden={spec.hidden} is not divisible by {heads} heads; "
            f"set distill.student.heads to a divisor of {spec.hidden}"
        )
    config = copy.deepcopy(teacher_config)
    setattr(config, adapter.layers_attr, spec.layers)
    setattr(config, adapter.hidden_attr, spec.hidden)
    setattr(config, adapter.heads_attr, heads)
    copies = spec.init == "teacher-layers" and spec.ffn is None  # copied layers keep the teacher's FFN
    setattr(config, adapter.ffn_attr, getattr(teacher_config, adapter.ffn_attr) if copies else spec.ffn_size)
    if spec.dropout is not None:
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout"):
            if hasattr(config, name):
                setattr(config, name, spec.dropout)
    if hasattr(config, "embedding_size"):  # factorised embeddings would not match the new width
        config.embedding_size = spec.hidden
    return config


def build_student(teacher: nn.Module, spec: StudentSpec, seed: int) -> nn.Module:
    """A new base encoder shaped by `spec`, initialised at random (seeded) or from the teacher."""
    from transformers import AutoModel

    config = student_config(teacher.config, spec)
    torch.manual_seed(seed)
    student = AutoModel.from_config(config)
    student.config.architectures = [type(student).__name__]
    if spec.init == "teacher-layers":
        copy_teacher_layers(teacher, student)
    return student


def teacher_layer_picks(teacher_layers: int, student_layers: int) -> list[int]:
    """Every k-th teacher layer (k = L // M), 0-based: 12 → 6 gives 0, 2, 4, 6, 8, 10."""
    if student_layers > teacher_layers:
        raise InputError(
            f"init: teacher-layers needs at most the teacher's {teacher_layers} layers, got {student_layers}; "
            "use init: random"
        )
    k = teacher_layers // student_layers
    return [i * k for i in range(student_layers)]


def copy_teacher_layers(teacher: nn.Module, student: nn.Module) -> None:
    """Copy every parameter outside the layers (embeddings, shared biases) and the picked layers."""
    t_layers, t_hidden, t_heads = attention_shape(teacher.config)
    s_layers, s_hidden, s_heads = attention_shape(student.config)
    adapter = adapter_for(teacher.config.model_type)
    t_ffn = getattr(teacher.config, adapter.ffn_attr)
    s_ffn = getattr(student.config, adapter.ffn_attr)
    if (t_hidden, t_heads, t_ffn) != (s_hidden, s_heads, s_ffn):
        raise InputError(
            f"init: teacher-layers needs the teacher's hidden size, heads and FFN size ({t_hidden}, {t_heads}, "
            f"{t_ffn}), got ({s_hidden}, {s_heads}, {s_ffn}); use init: random"
        )
    prefix = adapter.layers + "."
    t_state = teacher.state_dict()
    own = {k: v for k, v in t_state.items() if not k.startswith(prefix) and k in student.state_dict()}
    student.load_state_dict(own, strict=False)
    teacher_list, student_list = layer_list(teacher), layer_list(student)
    for s_index, t_index in enumerate(teacher_layer_picks(t_layers, s_layers)):
        student_list[s_index].load_state_dict(teacher_list[t_index].state_dict())
