"""Read Q, K and V of one layer (and its output hidden states) through forward hooks.

Never `output_attentions=True` over every layer: the hooks take the projections' outputs (and,
for hidden-state alignment, the layer's own output), and once everything the loss needs is
captured the forward pass stops (the rest of the network does not contribute to the loss). Hooks are registered for one call and removed right after,
whatever happens.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from minilm_deploy.models.adapters import adapter_for, base_model, layer_list, model_config, resolve_layer

PROJECTIONS = ("query", "key", "value")
PARTS = (*PROJECTIONS, "hidden")  # hidden: the layer's output, (B, T, D)


class _StopForward(Exception):
    """Raised from a hook once every needed tensor is captured; caught by `CaptureModel`."""


@dataclass
class RelationStates:
    """Captured projections of one layer, (B, H, T, d) each, with the (B, T) attention mask; and
    the layer's output hidden states (B, T, D), projected to the teacher's width for a student."""

    query: Tensor | None
    key: Tensor | None
    value: Tensor | None
    mask: Tensor
    score_bias: Tensor | None = None  # (H, T, T) or (B, H, T, T), added to attention scores
    hidden: Tensor | None = None

    def get(self, part: str) -> Tensor:
        tensor = getattr(self, part)
        if tensor is None:
            raise KeyError(f"{part} was not captured")
        return tensor


class CaptureModel(nn.Module):
    """Wraps an encoder; `forward(input_ids, attention_mask)` returns the chosen layer's Q/K/V.

    `layer` counts from 1 (or negative from the end). `parts` says what to capture; with
    `want_bias`, an additive score bias too (architectures that have one, e.g. MPNet).
    `projection` (a student's, trained with it and never saved in it) maps the captured hidden
    states to the teacher's width. A module, so DistributedDataParallel can wrap it (and the
    projection with it).
    """

    def __init__(
        self,
        model: nn.Module,
        layer: int = -1,
        parts: Iterable[str] = PROJECTIONS,
        *,
        want_bias: bool = False,
        stop_early: bool = True,
        what: str = "layer",
        projection: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.projection = projection
        config = model_config(model)
        self.adapter = adapter_for(config.model_type)
        layers = layer_list(model)
        self.layer_index = resolve_layer(layer, len(layers), what=what)
        self.parts = tuple(p for p in PARTS if p in set(parts))
        self.heads = int(getattr(config, self.adapter.heads_attr))
        self.want_bias = want_bias and self.adapter.score_bias is not None
        self.stop_early = stop_early

    def _modules_to_hook(self) -> dict[str, nn.Module]:
        layer = layer_list(self.model)[self.layer_index]
        return {part: layer if part == "hidden" else layer.get_submodule(getattr(self.adapter, part)) for part in self.parts}

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> RelationStates:
        store: dict[str, Tensor] = {}
        handles = []

        def hook_for(name: str):
            def hook(_module: nn.Module, _inputs: object, output: Tensor | tuple[Tensor, ...]) -> None:
                store[name] = output[0] if isinstance(output, tuple) else output  # a layer may return a tuple
                if self.stop_early and all(p in store for p in self.parts):
                    raise _StopForward

            return hook

        try:
            if self.want_bias:
                assert self.adapter.score_bias is not None
                bias_module = base_model(self.model).get_submodule(self.adapter.score_bias)
                handles.append(bias_module.register_forward_hook(hook_for("score_bias")))
            for part, module in self._modules_to_hook().items():
                handles.append(module.register_forward_hook(hook_for(part)))
            try:
                self.model(input_ids=input_ids, attention_mask=attention_mask)
            except _StopForward:
                pass
        finally:
            for handle in handles:
                handle.remove()
        return self._states(store, attention_mask)

    def _states(self, store: dict[str, Tensor], mask: Tensor) -> RelationStates:
        def heads(x: Tensor | None) -> Tensor | None:
            if x is None:
                return None
            B, T, D = x.shape
            return x.view(B, T, self.heads, D // self.heads).transpose(1, 2)  # (B, H, T, d)

        hidden = store.get("hidden")
        if hidden is not None and self.projection is not None:
            hidden = self.projection(hidden)  # (B, T, D_student) → (B, T, D_teacher)
        bias = store.get("score_bias")
        if bias is not None and self.adapter.score_bias_view is not None:
            bias = self.adapter.score_bias_view(bias)
        return RelationStates(
            query=heads(store.get("query")),
            key=heads(store.get("key")),
            value=heads(store.get("value")),
            mask=mask,
            score_bias=bias,
            hidden=hidden,
        )


@torch.no_grad()
def capture_teacher(capture: CaptureModel, input_ids: Tensor, attention_mask: Tensor) -> RelationStates:
    """The teacher's states: eval mode, no gradients."""
    capture.model.eval()
    return capture(input_ids, attention_mask)
