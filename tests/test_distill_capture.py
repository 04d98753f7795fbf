"""Capture through hooks: matches the model's own attention, stops early, leaves no hooks behind."""

from __future__ import annotations

import copy

import pytest
import torch
import transformers

from minilm_deploy.distill.capture import CaptureModel, capture_teacher
from minilm_deploy.distill.objective import MiniLMObjective
from minilm_deploy.distill.recipe import LossSpec
from minilm_deploy.errors import InputError

SMALL = dict(hidden_size=32, num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
             attn_implementation="eager")  # eager from construction: output_attentions is the reference


def hook_count(model) -> int:
    """Forward hooks currently registered anywhere in `model` (0 added after a capture)."""
    return sum(len(m._forward_hooks) for m in model.modules())


def _model(kind: str, layers: int = 3):
    torch.manual_seed(0)
    if kind == "bert":
        config = transformers.BertConfig(vocab_size=99, num_hidden_layers=layers, **SMALL)
        return transformers.BertModel(config, add_pooling_layer=False)
    if kind == "xlm-roberta":
        config = transformers.XLMRobertaConfig(vocab_size=99, num_hidden_layers=layers, pad_token_id=1, **SMALL)
        return transformers.XLMRobertaModel(config, add_pooling_layer=False)
    if kind == "mpnet":
        config = transformers.MPNetConfig(vocab_size=99, num_hidden_layers=layers, **SMALL)
        return transformers.MPNetModel(config, add_pooling_layer=False)
    if kind == "distilbert":
        config = transformers.DistilBertConfig(vocab_size=99, n_layers=layers, dim=32, n_heads=4, hidden_dim=64,
                                               max_position_embeddings=64, attn_implementation="eager")
        return transformers.DistilBertModel(config)
    raise AssertionError(kind)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(5, 99, (2, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    return ids, mask


@pytest.mark.parametrize("kind", ["bert", "xlm-roberta", "mpnet", "distilbert"])
@pytest.mark.parametrize("layer", [2, -1])
def test_captured_projections_reproduce_the_models_attention(kind: str, layer: int) -> None:
    model = _model(kind).eval()
    ids, mask = _batch()
    with torch.no_grad():
        reference = model(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
    hooks_before = hook_count(model)  # transformers may keep hooks of its own
    capture = CaptureModel(model, layer, want_bias=True)
    states = capture_teacher(capture, ids, mask)
    q, k = states.query, states.key
    assert q.shape == (2, 4, 7, 8) and states.value.shape == (2, 4, 7, 8)
    scores = q @ k.transpose(-1, -2) / 8**0.5  # (B, H, T, T)
    if states.score_bias is not None:
        scores = scores + states.score_bias
    scores = scores.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
    probs = scores.softmax(-1)
    expected = reference[layer - 1 if layer > 0 else layer]
    real = mask.bool()
    torch.testing.assert_close(probs[0], expected[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(probs[1][:, real[1]][:, :, real[1]], expected[1][:, real[1]][:, :, real[1]],
                               atol=1e-5, rtol=1e-4)
    assert (states.score_bias is not None) == (kind == "mpnet")
    assert hook_count(model) == hooks_before


def test_forward_stops_after_the_captured_layer() -> None:
    model = _model("bert", layers=4).eval()
    reached: list[int] = []
    for i, layer in enumerate(model.encoder.layer):
        layer.register_forward_hook(lambda *_a, i=i: reached.append(i))
    ids, mask = _batch()
    capture_teacher(CaptureModel(model, 2), ids, mask)
    assert reached == [0]  # layer 2's projections ran, its output (and layers 3, 4) never did
    reached.clear()
    capture_teacher(CaptureModel(model, 2, stop_early=False), ids, mask)
    assert reached == [0, 1, 2, 3]


def test_hooks_are_removed_even_when_the_forward_fails() -> None:
    model = _model("bert").eval()
    capture = CaptureModel(model, -1)
    before = hook_count(model)
    with pytest.raises(IndexError):
        capture(torch.full((1, 5), 10_000), torch.ones(1, 5, dtype=torch.long))  # ids out of range
    assert hook_count(model) == before
    capture(*_batch())
    assert hook_count(model) == before


def test_bad_layer_number_names_the_key() -> None:
    with pytest.raises(InputError, match="distill.loss.teacher_layer=9"):
        CaptureModel(_model("bert"), 9, what="distill.loss.teacher_layer")


def test_gradients_reach_the_student_only_and_copy_gives_zero_loss() -> None:
    teacher = _model("bert").eval()
    teacher.requires_grad_(False)
    student = copy.deepcopy(teacher).train()
    student.requires_grad_(True)
    student.config.hidden_dropout_prob = 0.0
    for module in student.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    objective = MiniLMObjective(LossSpec(), 4, 4)
    t_cap, s_cap = CaptureModel(teacher, -1), CaptureModel(student, -1)
    ids, mask = _batch()
    out = objective(capture_teacher(t_cap, ids, mask), s_cap(ids, mask))
    assert out.total.item() == pytest.approx(0.0, abs=1e-6)
    # A perturbed student: non-zero loss, gradients on its Q/K/V path, none on the teacher.
    with torch.no_grad():
        for p in student.encoder.layer[-1].attention.self.parameters():
            p.add_(0.3 * torch.randn_like(p))
    out = objective(capture_teacher(t_cap, ids, mask), s_cap(ids, mask))
    assert out.total.item() > 1e-4
    out.total.backward()
    assert all(p.grad is None for p in teacher.parameters())
    last = student.encoder.layer[-1]
    assert last.attention.self.query.weight.grad is not None and last.attention.self.query.weight.grad.abs().sum() > 0
    assert student.embeddings.word_embeddings.weight.grad is not None
    assert last.intermediate.dense.weight.grad is None  # past the captured projections: untouched
