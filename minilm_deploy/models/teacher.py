"""Loading encoders (teachers, assistants, students) as base models with their tokenizers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from minilm_deploy.errors import InputError
from minilm_deploy.models.adapters import adapter_for, attention_shape


@dataclass
class Encoder:
    """A base encoder, its tokenizer, and where it came from."""

    model: nn.Module
    tokenizer: object  # a transformers fast tokenizer
    source: str  # what the user named (zoo:NAME, hub id or folder)
    path: Path  # the local folder it was loaded from

    @property
    def shape(self) -> tuple[int, int, int]:
        """(layers, hidden, heads)."""
        return attention_shape(self.model.config)


def load_encoder(spec: str | Path, *, attn_implementation: str | None = None) -> Encoder:
    """Resolve `spec` (folder | hub id | zoo:NAME) and load its base encoder and tokenizer.

    The encoder is in eval mode with gradients off: as a teacher it never trains.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from minilm_deploy.sources import resolve_model

    path = resolve_model(spec)
    hf_logging.disable_progress_bar()  # our own progress shows on stderr; no per-load bars
    config = AutoConfig.from_pretrained(path)
    adapter_for(config.model_type)  # refuse unknown architectures before loading weights
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "pooler weights newly initialised": true, and unused here
    try:
        model = AutoModel.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise InputError(f"{spec}: could not load the model weights ({exc}); check the folder") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{spec}: no usable tokenizer in {path} ({type(exc).__name__}); add tokenizer.json") from None
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(f"{spec}: a fast tokenizer (tokenizer.json) is needed for distillation")
    model.eval()
    model.requires_grad_(False)
    return Encoder(model=model, tokenizer=tokenizer, source=str(spec), path=Path(path))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def embedding_parameters(model: nn.Module) -> int:
    embedding = model.get_input_embeddings()
    assert isinstance(embedding, nn.Embedding)
    return embedding.weight.numel()


def to_device(model: nn.Module, device: torch.device) -> nn.Module:
    return model.to(device)
