"""Hidden-state alignment (beyond the paper): the pure losses by hand, their place in the objective,
the captured layer output, and the projection between widths."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import transformers

from minilm_deploy.distill.capture import CaptureModel, RelationStates, capture_teacher
from minilm_deploy.distill.losses import mean_pool, pooled_mse_sum, token_cosine_sum
from minilm_deploy.distill.objective import Counts, MiniLMObjective, make_projection
from minilm_deploy.distill.recipe import LossSpec

SMALL = dict(num_attention_heads=4, intermediate_size=64, max_position_embeddings=64, attn_implementation="eager")


def _bert(hidden: int = 32, layers: int = 3, seed: int = 0) -> transformers.BertModel:
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=99, hidden_size=hidden, num_hidden_layers=layers, **SMALL)
    return transformers.BertModel(config, add_pooling_layer=False)


def _no_dropout(model: torch.nn.Module) -> torch.nn.Module:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(5, 99, (2, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    return ids, mask


def test_token_cosine_by_hand_ignores_padding() -> None:
    student = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]]])  # (1, 3, 2)
    teacher = torch.tensor([[[3.0, 0.0], [2.0, 0.0], [-1.0, 7.0]]])
    mask = torch.tensor([[1, 1, 0]])
    total, count = token_cosine_sum(student, teacher, mask)
    assert count == 2
    assert total.item() == pytest.approx((1 - 1) + (1 - 0))  # same direction, then orthogonal; the pad is ignored
    flipped, _ = token_cosine_sum(-teacher, teacher, mask)
    assert flipped.item() == pytest.approx(4.0)  # opposite: 2 per token


def test_pooled_mse_by_hand_uses_real_tokens_only() -> None:
    student = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[0.0, 0.0], [2.0, 2.0], [4.0, 4.0]]])
    teacher = torch.zeros_like(student)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    pooled = mean_pool(student, mask)
    torch.testing.assert_close(pooled, torch.tensor([[2.0, 3.0], [2.0, 2.0]]))
    total, count = pooled_mse_sum(student, teacher, mask)
    assert count == 2
    assert total.item() == pytest.approx((4 + 9) / 2 + (4 + 4) / 2)


def test_alignment_parts_are_off_unless_weighted_and_weights_are_checked() -> None:
    assert LossSpec().active_parts() == ("attention", "value")
    spec = LossSpec(weights={"hidden": 2.0, "embedding": 0.5})
    assert spec.active_parts() == ("attention", "value", "hidden", "embedding") and spec.weight("hidden") == 2.0
    only = LossSpec(weights={"attention": 0, "value": 0, "hidden": 1})
    assert only.active_parts() == ("hidden",)
    with pytest.raises(ValueError, match="every part is 0"):
        LossSpec(weights={"attention": 0, "value": 0})
    with pytest.raises(ValueError, match="must be >= 0"):
        LossSpec(weights={"hidden": -1})
    with pytest.raises(ValueError, match="parts: attention, value, hidden, embedding"):
        LossSpec(weights={"cosine": 1})


def _states(hidden: torch.Tensor, mask: torch.Tensor) -> RelationStates:
    return RelationStates(None, None, None, mask, hidden=hidden)


def test_objective_normalises_hidden_by_tokens_and_embedding_by_sequences() -> None:
    g = torch.Generator().manual_seed(0)
    t, s = torch.randn(2, 5, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    objective = MiniLMObjective(LossSpec(kind="minilm", weights={"attention": 0, "value": 0, "hidden": 1,
                                                                  "embedding": 3}), 4, 4)
    assert objective.captured_parts() == ("hidden",) and objective.heads is None
    out = objective(_states(t, mask), _states(s, mask))
    cos_sum, tokens = token_cosine_sum(s, t, mask)
    mse_sum, sequences = pooled_mse_sum(s, t, mask)
    assert out.parts["hidden"].item() == pytest.approx(cos_sum.item() / tokens)
    assert out.parts["embedding"].item() == pytest.approx(3 * mse_sum.item() / sequences)
    # Halves normalised by the whole batch's counts add up to the whole batch's loss.
    counts = Counts(tokens=float(mask.sum()), sequences=2.0)
    halves = sum(objective(_states(t[i:i + 1], mask[i:i + 1]), _states(s[i:i + 1], mask[i:i + 1]), counts).total.item()
                 for i in range(2))
    assert halves == pytest.approx(out.total.item(), rel=1e-6)


@pytest.mark.parametrize("kind", ["bert", "mpnet"])
def test_captured_hidden_is_the_layers_output(kind: str) -> None:
    torch.manual_seed(0)
    if kind == "bert":
        model = _bert().eval()
    else:
        config = transformers.MPNetConfig(vocab_size=99, hidden_size=32, num_hidden_layers=3, **SMALL)
        model = transformers.MPNetModel(config, add_pooling_layer=False).eval()
    ids, mask = _batch()
    states = capture_teacher(CaptureModel(model, -1, ("query", "hidden")), ids, mask)
    reference = model(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(states.hidden, reference)
    assert states.query is not None and states.key is None


def test_hidden_loss_is_zero_for_a_copy_positive_otherwise_and_trains_the_whole_last_layer() -> None:
    teacher = _no_dropout(_bert()).eval()
    student = _no_dropout(copy.deepcopy(teacher)).train()
    objective = MiniLMObjective(LossSpec(weights={"hidden": 1.0, "embedding": 1.0}), 4, 4)
    parts = objective.captured_parts()
    t_cap, s_cap = CaptureModel(teacher, -1, parts), CaptureModel(student, -1, parts)
    ids, mask = _batch()
    out = objective(capture_teacher(t_cap, ids, mask), s_cap(ids, mask))
    assert out.parts["hidden"].item() == pytest.approx(0.0, abs=1e-6)
    assert out.parts["embedding"].item() == pytest.approx(0.0, abs=1e-9)
    with torch.no_grad():
        for p in student.encoder.layer[-1].output.parameters():
            p.add_(0.3 * torch.randn_like(p))
    out = objective(capture_teacher(t_cap, ids, mask), s_cap(ids, mask))
    assert out.parts["hidden"].item() > 1e-4 and out.parts["embedding"].item() > 1e-6
    out.total.backward()
    last = student.encoder.layer[-1]
    for module in (last.intermediate.dense, last.output.dense, last.attention.output.dense):  # relations alone: none
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_a_narrower_student_is_compared_through_a_trained_projection() -> None:
    teacher, student = _no_dropout(_bert(32)).eval(), _no_dropout(_bert(16, layers=2, seed=1)).train()
    objective = MiniLMObjective(LossSpec(weights={"attention": 0, "value": 0, "hidden": 1.0}), 4, 4)
    assert make_projection(objective, 32, 32) is None  # equal widths: compared as they are
    assert make_projection(MiniLMObjective(LossSpec(), 4, 4), 16, 32) is None  # relations only: no projection
    projection = make_projection(objective, 16, 32)
    assert isinstance(projection, torch.nn.Linear) and projection.weight.shape == (32, 16) and projection.bias is None
    parts = objective.captured_parts()
    t_cap, s_cap = CaptureModel(teacher, -1, parts), CaptureModel(student, -1, parts, projection=projection)
    assert any(name.startswith("projection.") for name, _ in s_cap.named_parameters())  # DDP and AdamW see it
    ids, mask = _batch()
    optimizer = torch.optim.Adam(s_cap.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        out = objective(capture_teacher(t_cap, ids, mask), s_cap(ids, mask))
        assert s_cap(ids, mask).hidden.shape == (2, 7, 32)
        optimizer.zero_grad()
        out.total.backward()
        assert projection.weight.grad is not None
        optimizer.step()
        losses.append(out.total.item())
    assert math.isfinite(losses[-1]) and losses[-1] < 0.5 * losses[0]
    assert "projection.weight" not in student.state_dict()  # never part of the student
