"""MiniLM losses as pure functions on tensors.

A *relation* is a row-wise distribution over keys: softmax(X Yᵀ / √d) per head. MiniLM (v1)
uses attention (X=Q, Y=K) and value relations (X=Y=V); MiniLMv2 uses Q-Q, K-K and V-V after
re-splitting the concatenated heads into a chosen number of relation heads, so teacher and
student head counts may differ. The KL divergence KL(teacher ‖ student) is computed in
float32 from log-softmax, with padded keys given no probability (never log(0), never NaN from
large negative mask values) and padded query rows left out of the mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_NEG = torch.finfo(torch.float32).min  # a finite "minus infinity" for float32 scores


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, T, d) → (B, T, H·d)."""
    B, H, T, d = x.shape
    return x.transpose(1, 2).reshape(B, T, H * d)


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, T, D) → (B, heads, T, D/heads)."""
    B, T, D = x.shape
    if D % heads:
        raise ValueError(f"cannot split width {D} into {heads} relation heads; choose a divisor of {D}")
    return x.view(B, T, heads, D // heads).transpose(1, 2)  # (B, heads, T, D/heads)


def resplit_heads(x: Tensor, heads: int) -> Tensor:
    """(B, H, T, d) → (B, heads, T, H·d/heads): concatenate the heads and split them again."""
    if x.shape[1] == heads:
        return x
    return split_heads(merge_heads(x), heads)


def relation_log_probs(left: Tensor, right: Tensor, key_mask: Tensor, bias: Tensor | None = None) -> Tensor:
    """log softmax(left · rightᵀ / √d + bias) over keys, in float32.

    left, right: (B, H, T, d); key_mask: (B, T), nonzero for real tokens;
    bias: (H, T, T) or (B, H, T, T), added to the scores (e.g. relative positions).
    Returns (B, H, T, T); masked keys get a finite, hugely negative log-probability whose
    probability is exactly 0 (never -inf, so never inf - inf = NaN downstream).
    """
    d = left.shape[-1]
    with torch.autocast(device_type=left.device.type, enabled=False):
        scores = torch.matmul(left.float() * d**-0.5, right.float().transpose(-1, -2))  # (B, H, T, T)
        if bias is not None:
            scores = scores + bias.float()
        # Masked keys: add −3.4e38 in place, which rounds to exactly −3.4e38 for any finite score above −1e31, so
        # the result equals a masked_fill bit for bit; in place and with an identity backward it spares the
        # out-of-place copy and the masked gradient, each a pass over (B, H, T, T) (~35% of this loss on a CPU).
        # Unlike a fill, a NaN or infinite score at a padded key is not overwritten: a model that produces one
        # has diverged, and the loss says so rather than hiding it.
        key_bias = torch.zeros(key_mask.shape, dtype=scores.dtype, device=scores.device)  # (B, T)
        key_bias.masked_fill_(~key_mask.bool(), _NEG)
        scores.add_(key_bias[:, None, None, :])
        return torch.log_softmax(scores, dim=-1)


def kl_rows(teacher_logp: Tensor, student_logp: Tensor) -> Tensor:
    """KL(teacher ‖ student) per head and query row: (B, H, T, T) × 2 → (B, H, T).

    Σ_k p_T (log p_T − log p_S) in one fused op; terms at masked keys are exactly zero because
    the teacher's probability there is exp(−3.4e38 − …) = 0 and both log-probabilities are finite
    (the key mask is folded in by `relation_log_probs`).
    """
    with torch.autocast(device_type=teacher_logp.device.type, enabled=False):
        terms = F.kl_div(student_logp.float(), teacher_logp.float(), reduction="none", log_target=True)
        return terms.sum(dim=-1)


def masked_row_sum(rows: Tensor, query_mask: Tensor) -> Tensor:
    """Sum of (B, H, T) row values over heads and the real query rows only → scalar."""
    return (rows * query_mask[:, None, :].to(rows.dtype)).sum()


def relation_kl(
    teacher: tuple[Tensor, Tensor],
    student: tuple[Tensor, Tensor],
    mask: Tensor,
    heads: int | None = None,
    teacher_bias: Tensor | None = None,
    student_bias: Tensor | None = None,
) -> Tensor:
    """Mean KL between teacher and student relations over heads and real query rows.

    teacher, student: (left, right) pairs of (B, H, T, d) tensors (own head sizes);
    mask: (B, T) attention mask; heads: re-split both into this many relation heads.
    """
    kl, count = relation_kl_sum(teacher, student, mask, heads, teacher_bias, student_bias)
    return kl / count


def relation_kl_sum(
    teacher: tuple[Tensor, Tensor],
    student: tuple[Tensor, Tensor],
    mask: Tensor,
    heads: int | None = None,
    teacher_bias: Tensor | None = None,
    student_bias: Tensor | None = None,
) -> tuple[Tensor, int]:
    """(Σ KL over heads and real query rows, heads × real rows): the pieces of `relation_kl`."""
    mask = mask.bool()
    if heads is not None:
        teacher = (resplit_heads(teacher[0], heads), resplit_heads(teacher[1], heads))
        student = (resplit_heads(student[0], heads), resplit_heads(student[1], heads))
    if teacher[0].shape[1] != student[0].shape[1]:
        raise ValueError(f"teacher has {teacher[0].shape[1]} heads, student {student[0].shape[1]}; set relation heads")
    with torch.no_grad():
        t_logp = relation_log_probs(teacher[0].detach(), teacher[1].detach(), mask, teacher_bias)
    s_logp = relation_log_probs(student[0], student[1], mask, student_bias)
    rows = kl_rows(t_logp, s_logp)  # (B, H, T)
    return masked_row_sum(rows, mask), int(mask.sum().item()) * rows.shape[1]


def token_cosine_sum(student: Tensor, teacher: Tensor, mask: Tensor) -> tuple[Tensor, int]:
    """(Σ over real tokens of 1 − cos(student_t, teacher_t), real tokens): DistilBERT's L_cos.

    student, teacher: (B, T, D) hidden states of one width (project the student first);
    mask: (B, T), nonzero for real tokens. Computed in float32.
    """
    keep = mask.bool()
    with torch.autocast(device_type=student.device.type, enabled=False):
        cos = F.cosine_similarity(student.float(), teacher.detach().float(), dim=-1, eps=1e-8)  # (B, T)
        return ((1.0 - cos) * keep).sum(), int(keep.sum().item())


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """(B, T, D) → (B, D): the mean over real tokens (sentence-transformers' pooling), float32."""
    weights = mask.to(torch.float32).unsqueeze(-1)  # (B, T, 1)
    return (hidden.float() * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def pooled_mse_sum(student: Tensor, teacher: Tensor, mask: Tensor) -> tuple[Tensor, int]:
    """(Σ over sequences of the mean squared error of the mean-pooled embeddings, sequences).

    student, teacher: (B, T, D); mask: (B, T). The error is averaged over the D dimensions of each
    sentence embedding and summed over the batch, in float32.
    """
    with torch.autocast(device_type=student.device.type, enabled=False):
        s, t = mean_pool(student, mask), mean_pool(teacher.detach(), mask)  # (B, D) each
        return ((s - t) ** 2).mean(dim=-1).sum(), s.shape[0]
