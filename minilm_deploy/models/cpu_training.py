"""Training on a CPU: two kernels that PyTorch 2.13 makes slow there, replaced for the duration of a step.

**Attention under bf16 autocast.** PyTorch's CPU flash-attention kernel is fast forward in bf16 but its bf16
*backward* is 2-3x slower than the same kernel in float32 (Intel Xeon with AMX, 1 thread, q/k/v (32, 12, 128, 32),
one run: bf16 forward 8.5 ms + backward 112 ms; float32 from bf16 inputs, casts included, 15.5 + 41 ms). In a
distillation step of a 3x384 student under bf16 autocast it was the largest single cost (a quarter of the step).
So where gradients flow, the student's attention upcasts q, k, v to float32, runs SDPA there and hands back bf16;
forwards without gradients (the teacher, evaluation) keep the bf16 kernel.

**Dropout.** PyTorch's CPU dropout draws one Bernoulli sample per element, serially (about 5 ns an element at any
thread count and dtype, AMX Xeon): 16.5% of a bf16 fine-tuning step of all-MiniLM-L6-v2. With attention dropout
its SDPA also leaves flash attention for a math path that applies that dropout to the (B, H, T, T) probabilities.
`fast_dropout` draws 64 random bits at a time from the same generator (so `torch.manual_seed` still makes a run
repeatable) and gives each element 16 of them: an element is dropped with probability round(p * 2^16) / 2^16, p to
within 1/131072. With attention dropout the attention runs as two explicit matrix products with that dropout on
the probabilities (what SDPA's math path computes, less the slow draws): the products in the inputs' dtype (bf16
under autocast, as autocast runs an eager attention), the scores, softmax and dropout in float32. Products in
float32 instead made the attention's forward and backward 1.35-1.38x slower (q/k/v (32, 12, 64 or 128, 32), 1
thread, AMX, 4 interleaved runs: 47 against 34 ms at 64 tokens, 168 against 125 at 128).

`training_kernels(model, device_type)` switches a transformers model that uses SDPA to the attention function registered here
under `NAME` (the config's private field, never saved) and its `nn.Dropout` modules to `FastDropout`, for a `with`
block, and restores both. Models that do not dispatch through transformers' attention interface (MPNet) keep their
attention; their dropout modules are switched all the same. On other devices nothing changes.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator

import torch
from torch import nn
from transformers.integrations.sdpa_attention import sdpa_attention_forward

NAME = "minilm_sdpa_cpu_training"
_BITS = 16  # random bits per element: the drop probability's resolution is 2**-16


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> torch.Tensor:
    """A bool tensor of `shape`, each element True with probability 1 - round(p * 2**16) / 2**16, from the default
    CPU generator."""
    n = math.prod(shape)
    words = torch.empty(-(-n * _BITS // 64), dtype=torch.int64).random_(-(2**63), None)  # all 64 bits random
    bits = words.view(torch.int16)[:n].view(shape)  # uniform over [-2**15, 2**15)
    return bits >= round(p * 2**_BITS) - 2 ** (_BITS - 1)


def _keep_and_scale(x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
    return x * keep.to(x.dtype).mul_(scale)


class _KeepAndScale(torch.autograd.Function):
    """x * keep * scale, saving only the bool mask for backward (whose gradient is the same product)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return _keep_and_scale(x, keep, scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        (keep,) = ctx.saved_tensors
        return _keep_and_scale(grad, keep, ctx.scale), None, None


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Dropout (`torch.nn.functional.dropout`'s semantics) with `keep_mask`'s draws on a CPU; elsewhere torch's."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return nn.functional.dropout(x, p, training)
    return _KeepAndScale.apply(x, keep_mask(x.shape, p), 1.0 / (1.0 - p))


class FastDropout(nn.Dropout):
    """`nn.Dropout` through `fast_dropout`; `fast_dropouts` swaps a module's class to this one and back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


def _needs_float32(query: torch.Tensor) -> bool:
    return query.dtype == torch.bfloat16 and query.requires_grad


def _plain_encoder_attention(module: nn.Module, attention_mask: torch.Tensor | None, is_causal: bool | None,
                             kwargs: dict) -> bool:
    """No causal mask, grouped heads, position bias, soft cap or returned weights: what `dropout_attention` covers."""
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    return (not (causal and attention_mask is None) and getattr(module, "num_key_value_groups", 1) == 1
            and kwargs.get("position_bias") is None and kwargs.get("softcap") is None
            and not kwargs.get("output_attentions", False))


def dropout_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: torch.Tensor | None,
                      dropout: float, scaling: float | None) -> torch.Tensor:
    """softmax(q k^T * scaling + mask) with `fast_dropout`, times v; q, k, v: (B, H, T, d), mask: bool (True: attend)
    or additive, broadcast to (B, H, T, S). The two matrix products in the inputs' dtype (bf16 under autocast, as
    autocast runs an eager attention), the scores, softmax and dropout in float32. Returns (B, T, H, d) in the
    query's dtype."""
    with torch.autocast("cpu", enabled=False):
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        scores = torch.matmul(query, key.to(query.dtype).transpose(-1, -2)).float().mul_(scale)  # (B, H, T, S)
        if attention_mask is not None:
            if attention_mask.dtype == torch.bool:
                scores = scores.masked_fill_(~attention_mask, torch.finfo(torch.float32).min)
            else:
                scores = scores.add_(attention_mask.float())
        probs = fast_dropout(torch.softmax(scores, dim=-1), dropout)
        out = torch.matmul(probs.to(value.dtype), value)  # (B, H, T, d)
    return out.transpose(1, 2).contiguous().to(query.dtype)


def cpu_training_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                           is_causal: bool | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, except on a CPU where gradients flow: with dropout `dropout_attention`;
    without, in float32 where its bf16 backward would run. q, k, v: (B, H, T, d); returns (B, T, H, d)."""
    training = query.device.type == "cpu" and torch.is_grad_enabled()
    if training and dropout > 0.0 and _plain_encoder_attention(module, attention_mask, is_causal, kwargs):
        return dropout_attention(query, key, value, attention_mask, dropout, scaling), None
    if not (training and _needs_float32(query)):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    if attention_mask is not None and attention_mask.is_floating_point():
        attention_mask = attention_mask.float()
    with torch.autocast("cpu", enabled=False):
        out, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask,
                                              dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs)
    return out.to(query.dtype), weights


@functools.cache
def register() -> str:
    """Make `NAME` known to transformers (once per process); returns it."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    ALL_ATTENTION_FUNCTIONS.register(NAME, cpu_training_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
    return NAME


@contextlib.contextmanager
def training_attention(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Within the block, `model` (a transformers model using SDPA) runs its attention through
    `cpu_training_attention`; a model with another attention, or `enabled` False, is left alone."""
    config = getattr(model, "config", None)
    if not enabled or config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        yield
        return
    config._attn_implementation = register()
    try:
        yield
    finally:
        config._attn_implementation = "sdpa"


@contextlib.contextmanager
def fast_dropouts(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Within the block, every `nn.Dropout` module of `model` runs as `FastDropout`."""
    swapped = [m for m in model.modules() if type(m) is nn.Dropout] if enabled else []
    for module in swapped:
        module.__class__ = FastDropout
    try:
        yield
    finally:
        for module in swapped:
            module.__class__ = nn.Dropout


@contextlib.contextmanager
def training_kernels(model: nn.Module, device_type: str) -> Iterator[None]:
    """`training_attention` and `fast_dropouts` for `model`, on a CPU; elsewhere nothing."""
    on_cpu = device_type == "cpu"
    with training_attention(model, enabled=on_cpu), fast_dropouts(model, enabled=on_cpu):
        yield
