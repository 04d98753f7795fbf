"""Loading encoders (teachers, assistants, students) as base models with their tokenizers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from torch import nn

from minilm_deploy.models.adapters import adapter_for, attention_shape

if TYPE_CHECKING:
    from transformers import PreTrainedModel


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
    from transformers import AutoModel

    from minilm_deploy.models.loading import check_vocabulary, load_config, load_tokenizer, load_weights
    from minilm_deploy.sources import resolve_model

    path = resolve_model(spec)
    config = load_config(path)
    adapter_for(config.model_type)  # refuse unknown architectures before loading weights
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    tokenizer = load_tokenizer(path, fast=True)  # distillation batches come from the fast tokenizer
    check_vocabulary(path, tokenizer, config)
    model = load_weights(AutoModel, path, config=config, **kwargs)  # "pooler newly initialised": silenced, unused here
    model.eval()
    model.requires_grad_(False)
    return Encoder(model=model, tokenizer=tokenizer, source=str(spec), path=Path(path))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def embedding_parameters(model: nn.Module) -> int:
    embedding = cast("PreTrainedModel", model).get_input_embeddings()
    assert isinstance(embedding, nn.Embedding)
    return embedding.weight.numel()

