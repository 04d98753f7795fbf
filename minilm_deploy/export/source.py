"""The model being exported: loaded once, with the facts the exporter needs declared as data.

`SourceModel` answers: which task (embedding | classification | regression), which inputs the
model really uses (token_type_ids only where it has more than one type and the tokenizer makes
them), which outputs the artifact has, and the longest sequence it can take (positions are the
hard limit: a longer input fails at run time, so the artifact records it and the runtime truncates).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from minilm_deploy.errors import InputError
from minilm_deploy.export.manifest import sha256_file
from minilm_deploy.models.adapters import sequence_limit

# Models whose position ids start after the padding index (RoBERTa-style): usable positions = max - offset.
OUTPUTS = {"embedding": ("last_hidden_state", "sentence_embedding"), "classification": ("logits",), "regression": ("logits",)}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass
class SourceModel:
    path: Path
    model: torch.nn.Module  # in eval mode; AutoModel or AutoModelForSequenceClassification
    tokenizer: Any
    config: Any
    task: str  # "embedding" | "classification" | "regression"
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


def detect_task(config: Any) -> str:
    archs = getattr(config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        return "embedding"
    if getattr(config, "problem_type", None) == "regression" or int(getattr(config, "num_labels", 2)) == 1:
        return "regression"
    return "classification"


def load_source(path: Path, *, max_length: int = 0) -> SourceModel:
    """Load `path` (a local HF folder) for export; a missing or corrupt model is an InputError."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: no config.json; give a Hugging Face model folder")
    weights = next((path / f for f in WEIGHT_FILES if (path / f).is_file()), None)
    if weights is None:
        raise InputError(f"{path}: no model.safetensors or pytorch_model.bin; the model folder is incomplete")
    try:
        config = AutoConfig.from_pretrained(path)
        task = detect_task(config)
        cls = AutoModel if task == "embedding" else AutoModelForSequenceClassification
        kwargs: dict[str, Any] = {"attn_implementation": "eager"}  # the ORT optimizer fuses eager attention
        with quiet_progress():
            model = cls.from_pretrained(path, config=config, **kwargs).eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # loaders raise OSError, ValueError, SafetensorError, …: all mean "not loadable"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: cannot load the model ({first[:200]}); check the folder is a complete, uncorrupted model") from None
    inputs = used_inputs(model, config, tokenizer)
    limit = sequence_limit(path, config.to_dict())
    if max_length > limit:
        raise InputError(f"max_length {max_length} exceeds the model's position limit {limit}; lower it")
    return SourceModel(path, model, tokenizer, config, task, inputs, max_length or limit, sha256_file(weights))


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """No 'Loading weights' progress bar on stderr: a command's stderr is for its one-line error."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def used_inputs(model: torch.nn.Module, config: Any, tokenizer: Any) -> tuple[str, ...]:
    """input_ids and attention_mask always; token_type_ids only if the model has several types and the tokenizer makes them."""
    params = inspect.signature(model.forward).parameters
    wants_types = (
        "token_type_ids" in params
        and int(getattr(config, "type_vocab_size", 0) or 0) > 1
        and "token_type_ids" in getattr(tokenizer, "model_input_names", ())
    )
    return ("input_ids", "attention_mask") + (("token_type_ids",) if wants_types else ())
