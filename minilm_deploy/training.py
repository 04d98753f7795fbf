"""What both trainers (distillation, fine-tuning) share: the optimizer, the learning-rate schedule and the
training forward's bf16 autocast.

The recipe knobs have one name in both sections (`distill.train.*`, `finetune.*`): `lr`,
`weight_decay`, `warmup` (a fraction of the steps below 1, else a number of steps), `batch_size`,
`max_length`, `max_grad_norm` (0: no clipping), `bf16`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # recipes import this module for `warmup_steps`: no torch at import time
    import torch
    from torch import nn


def adamw(model: nn.Module, *, lr: float, weight_decay: float, eps: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on biases and LayerNorm weights (1-D ones). Fused: one
    pass over each tensor. AdamW updates the whole word-embedding table every step (30,522 x 384 for
    all-MiniLM-L6-v2), and torch's default implementation (on a CPU, a loop over the tensors) makes a new table-sized
    tensor at each of its operations: in a bf16 fine-tuning step of that model on a CPU (AMX, 1 thread) it took ~150 ms
    of ~600."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=eps, fused=True)


def warmup_steps(warmup: float, total: int) -> int:
    """`warmup` as a number of steps: a fraction of `total` below 1, else itself."""
    return int(warmup * total) if warmup < 1 else int(warmup)


def linear_schedule(step: int, total: int, warm: int) -> float:
    """The learning-rate factor at `step` (0-based): linear warm-up over `warm` steps to 1, then linear decay
    to 0 at `total`."""
    if warm and step < warm:
        return (step + 1) / warm
    return max(0.0, (total - step) / max(1, total - warm))


@contextlib.contextmanager
def training_autocast(model: nn.Module, device_type: str, bf16: bool) -> Iterator[None]:
    """The forward of a training step: under bf16 autocast if `bf16` (the loss and backward go outside it), and on
    a CPU with `model`'s attention and dropout through `models.cpu_training` (its bf16 attention backward and its
    dropout draws are slow there)."""
    import torch

    from minilm_deploy.models.cpu_training import training_kernels

    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16), training_kernels(model, device_type):
        yield
