"""MiniLM losses against values computed by hand, padding rules, numerics, head handling."""

from __future__ import annotations

import math

import pytest
import torch

from bench.relation_loss import masked_fill_log_probs
from minilm_deploy.distill.capture import RelationStates
from minilm_deploy.distill.losses import kl_rows, relation_kl, relation_log_probs, resplit_heads, split_heads
from minilm_deploy.distill.objective import Counts, MiniLMObjective
from minilm_deploy.distill.recipe import LossSpec
from minilm_deploy.errors import InputError


def _softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * (math.log(a) - math.log(b)) for a, b in zip(p, q, strict=True))


def _t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)[None, None]  # (1, 1, T, d)


MASK = torch.tensor([[1, 1, 0]])  # the third token is padding


def test_value_relation_kl_by_hand_with_padding() -> None:
    vt, vs = [[1.0], [2.0], [0.0]], [[0.0], [1.0], [1.0]]
    # Only keys 0, 1 are real; only query rows 0, 1 count; d = 1, so no scaling.
    expected = (
        _kl(_softmax([1 * 1, 1 * 2]), _softmax([0 * 0, 0 * 1])) + _kl(_softmax([2 * 1, 2 * 2]), _softmax([1 * 0, 1 * 1]))
    ) / 2
    got = relation_kl((_t(vt), _t(vt)), (_t(vs), _t(vs)), MASK)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_attention_kl_by_hand_with_scaling() -> None:
    qt, kt = [[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]], [[1.0, 1.0], [2.0, -1.0], [9.0, 9.0]]
    qs, ks = [[0.5, 0.5], [1.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 1.0], [3.0, 3.0]]
    r2 = math.sqrt(2.0)

    def rows(q, k):
        return [_softmax([sum(a * b for a, b in zip(q[i], k[j], strict=True)) / r2 for j in range(2)]) for i in range(2)]

    t_rows, s_rows = rows(qt, kt), rows(qs, ks)
    expected = sum(_kl(t_rows[i], s_rows[i]) for i in range(2)) / 2
    got = relation_kl((_t(qt), _t(kt)), (_t(qs), _t(ks)), MASK)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_padding_is_invisible() -> None:
    """Changing anything at a padded position changes nothing: keys get no probability, rows no weight."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=g) for _ in range(3))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    base = relation_kl((q, k), (v, k), mask)
    q2, k2 = q.clone(), k.clone()
    q2[0, :, 3:] = 1e4
    k2[0, :, 4] = -1e4
    assert relation_kl((q2, k2), (v, k2), mask).item() == pytest.approx(base.item(), rel=1e-6)


def test_teacher_probability_is_zero_on_masked_keys_and_rows_sum_to_one() -> None:
    x = torch.randn(1, 2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0]])
    logp = relation_log_probs(x, x, mask)
    p = logp.exp()
    assert torch.all(p[..., 2:] == 0)
    torch.testing.assert_close(p.sum(-1), torch.ones(1, 2, 4))


def test_the_in_place_key_mask_equals_a_masked_fill_bit_for_bit_in_value_and_gradient() -> None:
    g = torch.Generator().manual_seed(0)
    t, s = torch.randn(3, 2, 7, 4, generator=g) * 30, torch.randn(3, 2, 7, 4, generator=g) * 30
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0]])

    def loss_and_grad(log_probs) -> tuple[torch.Tensor, torch.Tensor]:
        x = s.clone().requires_grad_(True)
        loss = (kl_rows(log_probs(t), log_probs(x)) * mask[:, None, :]).sum()
        loss.backward()
        return loss.detach(), x.grad

    ours = loss_and_grad(lambda x: relation_log_probs(x, x, mask))
    plain = loss_and_grad(lambda x: masked_fill_log_probs(x, x, mask))  # the plain formula
    assert torch.equal(ours[0], plain[0]) and torch.equal(ours[1], plain[1])


def test_identical_relations_give_zero_loss() -> None:
    x = torch.randn(2, 4, 6, 8)
    mask = torch.ones(2, 6, dtype=torch.long)
    assert relation_kl((x, x), (x.clone(), x.clone()), mask).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_no_nan_under_autocast_with_huge_scores_and_empty_rows(dtype: torch.dtype) -> None:
    """Large activations (scores beyond fp16/bf16 range), a fully padded sequence: finite loss and gradients."""
    t = (torch.randn(2, 2, 6, 4) * 300).to(dtype)
    s = (torch.randn(2, 2, 6, 4) * 300).to(dtype).requires_grad_(True)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = relation_kl((t, t), (s, s), mask)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()
    assert torch.all(s.grad[1] == 0)  # the all-padding sequence teaches nothing


def test_kl_rows_are_nonnegative() -> None:
    a, b = torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4)
    mask = torch.ones(3, 5, dtype=torch.bool)
    rows = kl_rows(relation_log_probs(a, a, mask), relation_log_probs(b, b, mask))
    assert rows.shape == (3, 2, 5) and torch.all(rows >= -1e-6)


def test_resplit_heads_concatenates_then_splits() -> None:
    x = torch.arange(2 * 3 * 4 * 2, dtype=torch.float32).view(2, 3, 4, 2)  # (B, H=3, T, d=2)
    merged = x.transpose(1, 2).reshape(2, 4, 6)
    torch.testing.assert_close(resplit_heads(x, 2), split_heads(merged, 2))
    assert resplit_heads(x, 6).shape == (2, 6, 4, 1)
    with pytest.raises(ValueError, match="relation heads"):
        resplit_heads(x, 4)


def _states(heads: int, d: int, mask: torch.Tensor, seed: int) -> RelationStates:
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(mask.shape[0], heads, mask.shape[1], d, generator=g) for _ in range(3))
    return RelationStates(query=q, key=k, value=v, mask=mask)


def test_v1_refuses_unequal_heads_and_suggests_relation_heads() -> None:
    with pytest.raises(InputError, match="relation_heads"):
        MiniLMObjective(LossSpec(kind="minilm"), teacher_heads=12, student_heads=6)


def test_unequal_heads_accepted_with_relation_heads() -> None:
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    teacher, student = _states(12, 4, mask, 0), _states(6, 2, mask, 1)  # 48 vs 12 wide
    for spec in (LossSpec(kind="minilmv2", relation_heads=4), LossSpec(kind="minilm", relation_heads=4)):
        out = MiniLMObjective(spec, 12, 6)(teacher, student)
        assert torch.isfinite(out.total) and out.total.item() > 0
    v2 = MiniLMObjective(LossSpec(kind="minilmv2", relation_heads=4), 12, 6)(teacher, student)
    assert set(v2.parts) == {"query", "key", "value"}


def test_objective_sums_weighted_parts_and_global_denominator() -> None:
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    t, s = _states(2, 3, mask, 0), _states(2, 3, mask, 1)
    plain = MiniLMObjective(LossSpec(), 2, 2)(t, s)
    att = relation_kl((t.query, t.key), (s.query, s.key), mask).item()
    val = relation_kl((t.value, t.value), (s.value, s.value), mask).item()
    assert plain.parts["attention"].item() == pytest.approx(att, rel=1e-6)
    assert plain.total.item() == pytest.approx(att + val, rel=1e-6)  # unweighted sum
    weighted = MiniLMObjective(LossSpec(weights={"value": 0.5}), 2, 2)(t, s)
    assert weighted.total.item() == pytest.approx(att + 0.5 * val, rel=1e-6)
    # Two halves normalised by the whole batch's count add up to the whole batch's mean.
    counts = Counts(tokens=float(mask.sum()), sequences=float(mask.shape[0]))
    halves = [
        MiniLMObjective(LossSpec(), 2, 2)(_slice(t, i), _slice(s, i), counts).total.item() for i in range(2)
    ]
    assert sum(halves) == pytest.approx(plain.total.item(), rel=1e-6)


def _slice(states: RelationStates, i: int) -> RelationStates:
    return RelationStates(states.query[i : i + 1], states.key[i : i + 1], states.value[i : i + 1], states.mask[i : i + 1])


def test_loss_spec_rejects_unknown_weight_and_layer_zero() -> None:
    with pytest.raises(ValueError, match="unknown part"):
        LossSpec(kind="minilm", weights={"query": 1.0})
    with pytest.raises(ValueError, match="count from 1"):
        LossSpec(teacher_layer=0)
