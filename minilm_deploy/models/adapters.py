"""Where each architecture keeps its self-attention internals: one table entry per model type.

Distillation reads Q, K and V through forward hooks on the projection modules, so model code is
never touched. A new architecture is one `Adapter` line in `ADAPTERS` (keyed by
`config.model_type`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from minilm_deploy.errors import InputError


@dataclass(frozen=True)
class Adapter:
    layers: str  # dotted path of the ModuleList of transformer layers, from the base model
    query: str  # paths relative to one layer
    key: str
    value: str
    # The modules width pruning (`models/prune.py`) slices by head or by FFN neuron, relative to one layer:
    # the attention output projection (its input is the heads' concatenated context) and the FFN's two Linears.
    attention_output: str
    ffn_in: str
    ffn_out: str
    # An additive attention-score bias shared by all layers (MPNet's relative positions):
    # the module whose output it is, and how to turn that output into (H, T, T) or (B, H, T, T).
    score_bias: str | None = None
    score_bias_view: Callable[[torch.Tensor], torch.Tensor] | None = None
    # Position ids start after the padding index (RoBERTa-style embeddings): usable length = positions - offset.
    position_offset: int = 0
    # Config attribute names (DistilBERT spells them differently).
    heads_attr: str = "num_attention_heads"
    hidden_attr: str = "hidden_size"
    ffn_attr: str = "intermediate_size"
    layers_attr: str = "num_hidden_layers"


_BERT_LAYER = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
               "intermediate.dense", "output.dense")
_BERT = Adapter("encoder.layer", *_BERT_LAYER)
_ROBERTA = Adapter("encoder.layer", *_BERT_LAYER, position_offset=2)

ADAPTERS: dict[str, Adapter] = {
    "bert": _BERT,  # BERT, all-MiniLM, multilingual-e5 (loaded as BERT)
    "roberta": _ROBERTA,
    "xlm-roberta": _ROBERTA,
    "camembert": _ROBERTA,
    "electra": _BERT,
    "mpnet": Adapter(
        "encoder.layer",
        "attention.attn.q",
        "attention.attn.k",
        "attention.attn.v",
        "attention.attn.o",
        "intermediate.dense",
        "output.dense",
        score_bias="encoder.relative_attention_bias",
        score_bias_view=lambda out: out.permute(2, 0, 1),  # (T, T, H) → (H, T, T)
        position_offset=2,
    ),
    "distilbert": Adapter(
        "transformer.layer",
        "attention.q_lin",
        "attention.k_lin",
        "attention.v_lin",
        "attention.out_lin",
        "ffn.lin1",
        "ffn.lin2",
        heads_attr="n_heads",
        hidden_attr="dim",
        ffn_attr="hidden_dim",
        layers_attr="n_layers",
    ),
}


def adapter_for(model_type: str) -> Adapter:
    try:
        return ADAPTERS[model_type]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise InputError(
            f"architecture {model_type!r} has no attention adapter; supported: {known} "
            "(add one line to minilm_deploy/models/adapters.py)"
        ) from None


def model_config(model: nn.Module) -> Any:
    """A transformers model's config (torch's Module typing does not know the attribute)."""
    return cast(Any, model).config


def base_model(model: nn.Module) -> nn.Module:
    """The encoder without task heads (`model.bert`, `model.roberta`, ...), or the model itself."""
    prefix = getattr(model, "base_model_prefix", "")
    inner = getattr(model, prefix, None) if prefix else None
    return inner if isinstance(inner, nn.Module) else model


def layer_list(model: nn.Module) -> nn.ModuleList:
    adapter = adapter_for(model_config(model).model_type)
    layers = base_model(model).get_submodule(adapter.layers)
    assert isinstance(layers, nn.ModuleList), adapter.layers
    return layers


def resolve_layer(index: int, count: int, *, what: str) -> int:
    """A 1-based (or negative-from-the-end) layer number → a 0-based index; errors name the key."""
    position = index - 1 if index > 0 else count + index
    if not 0 <= position < count:
        raise InputError(f"{what}={index}: the model has {count} layers; use 1..{count} or -1 for the last")
    return position


def attention_shape(config) -> tuple[int, int, int]:
    """(layers, hidden, heads) of a model config, through the adapter's attribute names."""
    adapter = adapter_for(config.model_type)
    return (
        int(getattr(config, adapter.layers_attr)),
        int(getattr(config, adapter.hidden_attr)),
        int(getattr(config, adapter.heads_attr)),
    )


def position_offset(model_type: str) -> int:
    """How many position ids an architecture reserves (0 for a type outside the table)."""
    adapter = ADAPTERS.get(model_type)
    return adapter.position_offset if adapter is not None else 0


def sequence_limit(folder: Path, config: dict[str, Any]) -> int:
    """The longest input a model folder takes, from its files alone (no weights loaded): the position
    table less the architecture's offset, the tokenizer's `model_max_length` and sentence-transformers'
    `max_seq_length`, whichever is smallest. Export, the runtimes and the benchmark all truncate here."""
    limits = [int(config.get("max_position_embeddings", 512)) - position_offset(str(config.get("model_type", "")))]
    for name, key in (("tokenizer_config.json", "model_max_length"), ("sentence_bert_config.json", "max_seq_length")):
        try:
            value = int(json.loads((Path(folder) / name).read_text(encoding="utf-8"))[key])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if 0 < value < 1_000_000:  # transformers writes a huge sentinel for "no limit"
            limits.append(value)
    return min(limits)
