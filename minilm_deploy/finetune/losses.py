"""Fine-tuning losses as pure functions of logits: the hard-label loss and task distillation.

Task distillation (beyond the paper, after Hinton et al. 2015): a fine-tuned teacher's logits
are soft targets next to the hard labels,
    loss = (1 - w) * hard + w * T² · KL(softmax(t / T) ‖ softmax(s / T))
for classification, and (1 - w) * MSE(s, y) + w * MSE(s, t) for regression.

Hidden-state distillation (TinyBERT's intermediate layers, Jiao et al. 2020): the student's hidden states, through
a learned projection where it is narrower, against the teacher layers they are matched to, as a relative error
(`hidden_relative_error`): scale-free, so one weight fits a small and a base-size teacher alike.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

HardLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SoftLoss = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels)  # logits (B, K), labels (B,) int64


def regression_mse(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))  # logits (B, 1), labels (B,)


def soft_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(teacher_T ‖ student_T), averaged over the batch; (B, K) logits each."""
    log_p_s = F.log_softmax(student / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher / temperature, dim=-1)
    return F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean") * temperature**2


def soft_mse(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.mse_loss(student, teacher)  # regression: the temperature does not apply


def hidden_relative_error(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ ‖s − t‖² / Σ ‖t‖² over the real tokens: 0 for a perfect match, 1 for a student that outputs zeros.
    student, teacher (B, T, D): one layer's states (the student's already projected to the teacher's width);
    mask (B, T): 1 for a real token, 0 for padding."""
    keep = mask.to(teacher.dtype).unsqueeze(-1)  # (B, T, 1)
    error = ((student - teacher) * keep).pow(2).sum()
    return error / (teacher * keep).pow(2).sum().clamp_min(torch.finfo(teacher.dtype).tiny)


LOSSES: dict[str, tuple[HardLoss, SoftLoss]] = {
    "classification": (cross_entropy, soft_kl),
    "regression": (regression_mse, soft_mse),
}


def task_loss(
    kind: str,
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None = None,
    temperature: float = 1.0,
    weight: float = 0.0,
    labelled: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """(total, parts): the hard loss, mixed with the soft loss when teacher logits are given. `labelled` (B,)
    bool: the rows that have a hard label (augmented copies have soft targets only); the hard loss is their
    mean (0 when the batch has none), the soft loss the mean over every row."""
    hard_fn, soft_fn = LOSSES[kind]
    if labelled is None:
        hard = hard_fn(logits, labels)
    elif bool(labelled.any()):
        hard = hard_fn(logits[labelled], labels[labelled])  # (B_labelled, K), (B_labelled,)
    else:
        hard = logits.sum() * 0.0  # keeps the graph: a batch of copies only
    if teacher_logits is None:
        return hard, {"hard": float(hard.detach())}
    soft = soft_fn(logits, teacher_logits.to(logits.dtype), temperature)
    total = (1.0 - weight) * hard + weight * soft
    return total, {"hard": float(hard.detach()), "soft": float(soft.detach())}
