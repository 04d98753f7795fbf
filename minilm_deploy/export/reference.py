"""The model being exported, in PyTorch: the reference every export is checked against, loaded once, with the
facts the exporter needs declared as data.

`ReferenceModel` answers: which task (embedding | classification | regression), which inputs the
model really uses (token_type_ids only where it has more than one type and the tokenizer makes
them), which outputs the artifact has, and the longest sequence it can take (positions are the
hard limit: a longer input fails at run time, so the artifact records it and the runtime truncates).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from minilm_deploy.artifact import ModelTask, sha256_file
from minilm_deploy.errors import InputError
from minilm_deploy.models.adapters import sequence_limit
from minilm_deploy.models.loading import check_vocabulary, load_config, load_tokenizer, load_weights, weight_files

# Models whose position ids start after the padding index (RoBERTa-style): usable positions = max - offset.
OUTPUTS = {"embedding": ("last_hidden_state", "sentence_embedding"), "classification": ("logits",), "regression": ("logits",)}


@dataclass
class ReferenceModel:
    path: Path
    model: torch.nn.Module  # in eval mode; AutoModel or AutoModelForSequenceClassification
    tokenizer: Any
    config: Any
    task: ModelTask
    inputs: tuple[str, ...]
    max_length: int
    weights_sha256: str

    @property
    def outputs(self) -> tuple[str, ...]:
        return OUTPUTS[self.task]

    @property
    def label_names(self) -> tuple[str, ...]:
        if self.task != "classification":
            return ()
        id2label = self.config.id2label or {}
        return tuple(str(id2label[i]) for i in sorted(id2label, key=int))

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    @property
    def num_heads(self) -> int:
        return int(self.config.num_attention_heads)


def detect_task(config: Any) -> ModelTask:
    archs = getattr(config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        return "embedding"
    if getattr(config, "problem_type", None) == "regression" or int(getattr(config, "num_labels", 2)) == 1:
        return "regression"
    return "classification"


def load_reference(path: Path, *, max_length: int = 0) -> ReferenceModel:
    """Load `path` (a local HF folder) for export through the one loading path (`models/loading.py`): a missing,
    pickle-only or corrupt model, or a tokenizer of another vocabulary, is a one-line InputError."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    path = Path(path)
    weights = weight_files(path)[0]
    config = load_config(path)
    task = detect_task(config)
    tokenizer = load_tokenizer(path)
    check_vocabulary(path, tokenizer, config)  # a tokenizer of another vocabulary would index past the embedding
    cls = AutoModel if task == "embedding" else AutoModelForSequenceClassification
    model = load_weights(cls, path, config=config, attn_implementation="eager").eval()  # ORT fuses eager attention
    inputs = used_inputs(model, config, tokenizer)
    limit = sequence_limit(path, config.to_dict())
    if max_length > limit:
        raise InputError(f"max_length {max_length} exceeds the model's position limit {limit}; lower it")
    return ReferenceModel(path, model, tokenizer, config, task, inputs, max_length or limit, sha256_file(weights))


def used_inputs(model: torch.nn.Module, config: Any, tokenizer: Any) -> tuple[str, ...]:
    """input_ids and attention_mask always; token_type_ids only if the model has several types and the tokenizer makes them."""
    params = inspect.signature(model.forward).parameters
    wants_types = (
        "token_type_ids" in params
        and int(getattr(config, "type_vocab_size", 0) or 0) > 1
        and "token_type_ids" in getattr(tokenizer, "model_input_names", ())
    )
    return ("input_ids", "attention_mask") + (("token_type_ids",) if wants_types else ())
