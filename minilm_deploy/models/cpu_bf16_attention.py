"""bf16 training on a CPU: the attention that backward runs through is computed in float32.

PyTorch's CPU flash-attention kernel is fast forward in bf16 but its bf16 *backward* is 2-3x slower than
the same kernel in float32 (torch 2.13, Intel Xeon with AMX, 1 thread, q/k/v (32, 12, 128, 32), one run:
bf16 forward 8.5 ms + backward 112 ms; float32 from bf16 inputs, casts included, 15.5 + 41 ms). In a
distillation step of a 3x384 student under bf16 autocast it was the largest single cost (a quarter of the
step). So under autocast on a CPU, where gradients flow, the student's attention upcasts q, k, v to
float32, runs SDPA there and hands back bf16; forwards without gradients (the teacher, evaluation) keep
the bf16 kernel. Everything else stays as autocast decides. In the real trainer (`bench/bf16_attention.py`, 3x384
c1-both, 256k tokens, 1 thread, AMX): 1.22x the tokens/s for a student without dropout; with attention dropout
(a recipe's default: the teacher's 0.1) PyTorch's CPU SDPA takes its math path, which computes bf16 inputs in
float32 itself, so there the losses are equal bit for bit and the speed is unchanged (1.02x).

The function is registered with transformers' attention and mask interfaces under `NAME`;
`training_attention(model)` switches a model that uses SDPA to it for the duration of a `with` block
(the setting lives in the config's private field, which is never saved). Models that do not dispatch
through transformers' attention interface (MPNet) are left as they are.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
from torch import nn
from transformers.integrations.sdpa_attention import sdpa_attention_forward

NAME = "minilm_sdpa_cpu_bf16_training"


def _needs_float32(query: torch.Tensor) -> bool:
    return query.device.type == "cpu" and query.dtype == torch.bfloat16 and torch.is_grad_enabled() and query.requires_grad


def sdpa_float32_backward(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, in float32 when its bf16 CPU backward would run; q, k, v: (B, H, T, d)."""
    if not _needs_float32(query):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if attention_mask is not None and attention_mask.is_floating_point():
        attention_mask = attention_mask.float()
    with torch.autocast("cpu", enabled=False):
        out, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask, **kwargs)
    return out.to(query.dtype), weights  # (B, T, H, d)


@functools.cache
def register() -> str:
    """Make `NAME` known to transformers (once per process); returns it."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    ALL_ATTENTION_FUNCTIONS.register(NAME, sdpa_float32_backward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
    return NAME


@contextlib.contextmanager
def training_attention(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Within the block, `model` (a transformers model using SDPA) runs its attention through
    `sdpa_float32_backward`; a model with another attention, or `enabled` False, is left alone."""
    config = getattr(model, "config", None)
    if not enabled or config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        yield
        return
    config._attn_implementation = register()
    try:
        yield
    finally:
        config._attn_implementation = "sdpa"
